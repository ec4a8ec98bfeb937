/** `clip index IMAGE`: read every layer once and write the image's index file. */
import { openImage, parsePlatform, RegistryPusher, RegistryRepository } from '../../oci/index.js';
import { writeIndexFile } from '../../index/writer.js';
import { packIndex, publishIndex, storeSharedIndex } from '../../storage/index-artifact.js';
import { RedisChunkCache } from '../../storage/remote-cache.js';
import { ClipError } from '../../util/errors.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { checkLimits, indexImage, loadCachedIndex } from '../../storage/indexer.js';
import { createLogger } from '../../util/log.js';
import { formatSize, parseSize } from '../../util/size.js';
import { progressOf } from '../image-arg.js';
import { printJson } from '../output.js';
import { createProgress, type Progress } from '../progress.js';
import type { IndexProgress } from '../../storage/indexer.js';

export interface IndexCommandOptions {
  output?: string;
  span?: string;
  chunkSize?: string;
  maxInflated?: string;
  maxEntries?: string;
  platform?: string;
  cacheDir?: string;
  insecureRegistry?: string[];
  remoteCache?: string;
  push?: boolean;
  logLevel?: string;
  logFormat?: string;
  force?: boolean;
  json?: boolean;
  progress?: boolean;
}

export interface IndexReport {
  reference: string;
  manifestDigest: string;
  platform: string;
  /** The -o file, when given. */
  output: string | null;
  /** The copy in the cache directory. */
  cached: string | null;
  /** Whether the index was already in the cache (not read again: --force reads the image anyway). */
  reused: boolean;
  /** The artifact manifest the index was pushed as (--push). */
  published: string | null;
  /** Whether the shared cache took a copy (--remote-cache). */
  shared: boolean;
  entries: number;
  inodes: number;
  layers: number;
  indexBytes: number;
  compressedBytes: number;
  uncompressedBytes: number;
  /** indexBytes / uncompressedBytes. */
  share: number;
  seconds: number;
}

function percent(x: number): string {
  return `${(100 * x).toFixed(x < 0.001 ? 3 : 2)} %`;
}

export function formatIndexReport(r: IndexReport): string {
  const where = [r.output, r.cached].filter((x): x is string => x !== null);
  return [
    r.reused ? `already indexed: ${r.reference} (${r.platform}); --force reads it again` : `indexed ${r.reference} (${r.platform}) in ${r.seconds.toFixed(1)} s`,
    `  manifest  ${r.manifestDigest}`,
    ...where.map((w, i) => `  ${i === 0 ? 'index    ' : '         '} ${w}`),
    ...(r.published ? [`  pushed    artifact ${r.published}, referring to the manifest`] : []),
    ...(r.shared ? ['  shared    stored in the shared cache'] : []),
    `  entries   ${r.entries} (${r.inodes} inodes) in ${r.layers} layer${r.layers === 1 ? '' : 's'}`,
    `  size      ${formatSize(r.indexBytes)}: ${percent(r.share)} of the image's ${formatSize(r.uncompressedBytes)} uncompressed`
      + ` (${percent(r.compressedBytes ? r.indexBytes / r.compressedBytes : 0)} of ${formatSize(r.compressedBytes)} stored)`,
    '',
  ].join('\n');
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** Uncompressed bytes between checkpoints: too small an index grows past the image, too big a read inflates too much. */
export function parseSpan(text: string): number {
  const n = parseSize(text);
  if (!(n >= 64 * KiB && n <= 1024 * MiB)) throw new ClipError('EINVAL', '--span must be between 64KiB and 1GiB', { object: text });
  return n;
}

/** Bytes per verified chunk: a power of two the disk cache and the shared cache can key. */
export function parseChunkSize(text: string): number {
  const n = parseSize(text);
  if (!(n >= 4 * KiB && n <= 64 * MiB) || (n & (n - 1)) !== 0) {
    throw new ClipError('EINVAL', '--chunk-size must be a power of two between 4KiB and 64MiB', { object: text });
  }
  return n;
}

function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw new ClipError('EINVAL', `${flag} takes a whole number`, { object: text });
  return Number(text);
}

export async function indexCommand(image: string, opts: IndexCommandOptions): Promise<void> {
  const started = Date.now();
  const logger = createLogger(opts.logLevel, 2, opts.logFormat);
  const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
  // Every argument is checked before any work starts.
  const span = opts.span === undefined ? undefined : parseSpan(opts.span);
  const chunkSize = opts.chunkSize === undefined ? undefined : parseChunkSize(opts.chunkSize);
  const maxInflated = opts.maxInflated === undefined ? undefined : parseSize(opts.maxInflated);
  const maxEntries = opts.maxEntries === undefined ? undefined : parseCount(opts.maxEntries, '--max-entries');
  checkLimits({ ...(maxInflated !== undefined ? { maxInflated } : {}), ...(maxEntries !== undefined ? { maxEntries } : {}) });
  const source = openImage(image, { insecureRegistries: opts.insecureRegistry ?? [], logger });
  if (opts.push && !(source instanceof RegistryRepository)) {
    throw new ClipError('EINVAL', '--push needs an image in a registry (the index is pushed to its repository)', { object: image });
  }
  // Made on the first indexing event: a command that fails before reading shows no progress.
  let progress: Progress | undefined;
  let feed: ((e: IndexProgress) => void) | undefined;
  const stopProgress = (): void => {
    progress?.stop();
    progress = undefined;
  };
  const remote = opts.remoteCache ? await RedisChunkCache.connect({ url: opts.remoteCache, logger }) : undefined;
  try {
    const cacheDir = opts.cacheDir ?? defaultCacheDir();
    const resolved = await source.resolve(platform ? { platform } : {});
    // An image indexed before (same manifest) is not read again, unless asked to or with other settings.
    const found = opts.force || span !== undefined || chunkSize !== undefined ? undefined : await loadCachedIndex(cacheDir, resolved.manifestDigest, logger);
    // One found published left its windows where it was found: pushing it would publish an index without them.
    const cached = found && (!opts.push || found.windowsAtHand) ? found : undefined;
    if (found && !cached) logger.info({ image }, 'the cached index came without its checkpoint windows: indexing the image to push a whole one');
    if (cached && opts.output) await writeIndexFile(opts.output, cached.buffer);
    const result = cached ? { index: cached, image: resolved, bytes: cached.buffer, cachedAt: cached.file } : await indexImage(source, {
      resolved,
      cacheDir,
      logger,
      onProgress: (e) => {
        progress ??= createProgress({ label: 'indexing', quiet: opts.progress === false, ...(opts.json ? { plain: true } : {}) });
        feed ??= progressOf(progress);
        feed(e);
      },
      ...(platform ? { platform } : {}),
      ...(opts.output ? { output: opts.output } : {}),
      ...(span !== undefined ? { span } : {}),
      ...(chunkSize !== undefined ? { chunkSize } : {}),
      ...(maxInflated !== undefined ? { maxInflated } : {}),
      ...(maxEntries !== undefined ? { maxEntries } : {}),
      ...(remote ? { remote } : {}),
      // --force reads every layer again; otherwise a layer scanned before (here or by a node sharing the cache) is not.
      ...(opts.force ? { reuseScans: false } : {}),
    });
    stopProgress();
    const { index, image: img } = result;
    // Packed once for both places it may go.
    const packed = opts.push || remote ? await packIndex(result.bytes) : undefined;
    const published = opts.push ? (await publishIndex(source as RegistryRepository, new RegistryPusher(source as RegistryRepository), img, result.bytes, packed)).digest : null;
    let shared = false;
    if (remote) {
      shared = await storeSharedIndex(remote, img.manifestDigest, result.bytes, packed);
      if (!shared) logger.warn({ remote: opts.remoteCache!.replace(/\/\/[^@/]*@/, '//***@') }, 'the shared cache did not take the index');
    }
    const uncompressed = index.layers.reduce((n, l) => n + l.uncompressedSize, 0);
    const report: IndexReport = {
      reference: img.reference,
      manifestDigest: img.manifestDigest,
      platform: [img.platform.os, img.platform.architecture, img.platform.variant].filter(Boolean).join('/'),
      output: opts.output ?? null,
      cached: result.cachedAt ?? null,
      reused: cached !== undefined,
      published,
      shared,
      entries: index.entryCount,
      inodes: index.inodeCount,
      layers: index.layers.length,
      indexBytes: result.bytes.length,
      compressedBytes: index.layers.reduce((n, l) => n + l.compressedSize, 0),
      uncompressedBytes: uncompressed,
      share: uncompressed ? result.bytes.length / uncompressed : 0,
      seconds: (Date.now() - started) / 1000,
    };
    if (opts.json) printJson(report);
    else process.stdout.write(formatIndexReport(report));
  } finally {
    stopProgress();
    await remote?.close();
    await source.close?.();
  }
}
