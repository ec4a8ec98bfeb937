/**
 * Opening a reading command's IMAGE|INDEX argument with a progress display; the options themselves
 * are read-options.ts, opening the image itself is src/mount/open-image.ts.
 */
import { openImageArg, type OpenedImage } from '../mount/open-image.js';
import { defaultCacheDir, ensurePrivateDir } from '../storage/cache-dir.js';
import { parsePlatform } from '../oci/platform.js';
import { timeoutsWithin } from '../oci/retry.js';
import type { OpenOptions } from '../oci/index.js';
import type { IndexProgress } from '../storage/indexer.js';
import { createLogger, type Logger } from '../util/log.js';
import { createProgress, type Progress } from './progress.js';
import { storageSettingsOf, type ReadCommandOptions } from './read-options.js';

/** Feed indexing events into a progress display. */
export function progressOf(progress: Progress): (event: IndexProgress) => void {
  return (event) => {
    if (event.kind === 'start') {
      progress.addTotal(event.totalBytes);
      progress.status(`layers 0/${event.layers}`);
    } else if (event.kind === 'bytes') progress.advance(event.bytes);
    else progress.status(`layers ${event.layersDone}/${event.layers}`);
  };
}

/** The registry options of a reading command: a stalled request is given up in time to retry within --read-timeout. */
export function registryOptionsOf(opts: ReadCommandOptions): OpenOptions {
  const { readTimeoutMs } = storageSettingsOf(opts);
  return {
    insecureRegistries: opts.insecureRegistry ?? [],
    ...(readTimeoutMs !== undefined ? { timeouts: timeoutsWithin(readTimeoutMs) } : {}),
  };
}

/** What a reading command's action starts with: a logger, and the image opened with a progress display if it must be indexed. */
export async function openForCommand(arg: string, opts: ReadCommandOptions): Promise<{ img: OpenedImage; logger: Logger }> {
  const logger = createLogger(opts.logLevel, 2, opts.logFormat);
  // Before any work: a cache directory that cannot be used is the user's mistake to hear about now.
  await ensurePrivateDir(opts.cacheDir ?? defaultCacheDir());
  // Made on the first indexing event: a cached or given index shows no progress at all.
  let progress: Progress | undefined;
  let report: ((e: IndexProgress) => void) | undefined;
  try {
    const img = await openImageArg(arg, {
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
      registry: registryOptionsOf(opts),
      ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
      ...(opts.discover === false ? { discover: false } : {}),
      logger,
      onProgress: (e) => {
        progress ??= createProgress({ label: 'indexing', ...(opts.json ? { plain: true } : {}) });
        report ??= progressOf(progress);
        report(e);
      },
    });
    return { img, logger };
  } finally {
    progress?.stop();
  }
}
