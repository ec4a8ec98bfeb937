/**
 * The IMAGE|INDEX argument of the commands that read an image: an index file is loaded as it is
 * (its blobs are reached lazily through the location it records, so everything already cached is
 * served without the registry); an image reference is resolved, and its cached index used or made.
 */
import { open } from 'node:fs/promises';
import type { Command } from 'commander';
import { MAGIC } from '../index/format.js';
import { ImageIndex } from '../index/reader.js';
import { openBlobStore, openImage, parsePlatform, type BlobStore, type ImageSource, type OpenOptions, type Platform } from '../oci/index.js';
import { indexLayers } from '../storage/index-layers.js';
import { indexImage, loadCachedIndex, type IndexProgress } from '../storage/indexer.js';
import { CheckpointSource, defaultCacheDir, openStorage, type ResumableLayer, type Storage } from '../storage/index.js';
import { ClipError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { createProgress, type Progress } from './progress.js';

/** The option values every reading command shares (as commander hands them over). */
export interface ReadCommandOptions {
  cacheDir?: string;
  platform?: string;
  insecureRegistry?: string[];
  remoteCache?: string;
  logLevel?: string;
  json?: boolean;
}

/** Add the shared options of commands that read an image. */
export function addReadOptions(cmd: Command, opts: { json?: boolean } = {}): Command {
  cmd
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)')
    .option('--insecure-registry <host...>', 'registry hosts to reach over plain HTTP (loopback hosts always are)')
    .option('--remote-cache <url>', 'shared chunk cache: redis://[:password@]host:port, rediss://..., redis+cluster://h1:p1,h2:p2')
    .option('--log-level <level>', 'log level on stderr: trace, debug, info, warn, error, silent', process.env.CLIP_LOG_LEVEL ?? 'warn');
  if (opts.json !== false) cmd.option('--json', 'print JSON for scripts');
  return cmd;
}

export interface ImageArgOptions {
  cacheDir?: string;
  platform?: Platform;
  registry?: OpenOptions;
  logger?: Logger;
  /** Progress of indexing when the image has no index yet (default: none). */
  onProgress?: (event: IndexProgress) => void;
}

export interface OpenedImage {
  index: ImageIndex;
  /** 'file': the argument was an index file; 'cache': a cached index; 'indexed': made just now. */
  origin: 'file' | 'cache' | 'indexed';
  /** The index file it was loaded from, when there is one. */
  indexFile?: string;
  cacheDir: string;
  /** Where the layers' blobs are read from: opened on first use. */
  blobs: BlobStore;
  /** The index's layers as the read path wants them. */
  layers: ResumableLayer[];
  close(): Promise<void>;
}

/**
 * 'index' for a regular file that starts with the index magic, 'other-file' for any other regular
 * file, 'none' when there is no regular file at that path (then it is an image reference).
 */
export async function indexFileKind(file: string): Promise<'index' | 'other-file' | 'none'> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return 'none';
  }
  try {
    if (!(await fh.stat()).isFile()) return 'none';
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(MAGIC) ? 'index' : 'other-file';
  } finally {
    await fh.close();
  }
}

/** A BlobStore opened on first use, so a command served from the caches never touches the registry. */
class LazyBlobStore implements BlobStore {
  private store: BlobStore | undefined;

  constructor(readonly location: string, private readonly opts: OpenOptions) {}

  private get(): BlobStore {
    this.store ??= openBlobStore(this.location, this.opts);
    return this.store;
  }

  openBlob(...args: Parameters<BlobStore['openBlob']>): ReturnType<BlobStore['openBlob']> {
    return this.get().openBlob(...args);
  }

  openBlobRange(...args: Parameters<BlobStore['openBlobRange']>): ReturnType<BlobStore['openBlobRange']> {
    return this.get().openBlobRange(...args);
  }

  async close(): Promise<void> {
    await this.store?.close?.();
  }
}

/** Load or make the index for a command's IMAGE|INDEX argument. */
export async function openImageArg(arg: string, opts: ImageArgOptions = {}): Promise<OpenedImage> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const registry = { ...opts.registry, ...(opts.logger ? { logger: opts.logger } : {}) };
  const kind = await indexFileKind(arg);
  if (kind === 'other-file') {
    throw new ClipError('ECORRUPT', 'is a file but not a clip index (for an image of that name, write its full reference, e.g. docker.io/library/NAME)', { object: arg });
  }
  if (kind === 'index') {
    const index = await ImageIndex.open(arg);
    const blobs = new LazyBlobStore(index.image.location, registry);
    return { index, origin: 'file', indexFile: arg, cacheDir, blobs, layers: indexLayers(index), close: () => blobs.close() };
  }
  if (arg.endsWith('.clip') && !arg.includes(':')) {
    // Most likely a mistyped index file, not an image on Docker Hub.
    throw new ClipError('ENOTFOUND', 'no such index file (and it does not look like an image reference)', { object: arg });
  }
  const source: ImageSource = openImage(arg, registry);
  try {
    const image = await source.resolve(opts.platform ? { platform: opts.platform } : {});
    let origin: OpenedImage['origin'] = 'cache';
    let index = await loadCachedIndex(cacheDir, image.manifestDigest, opts.logger);
    let indexFile = index?.file;
    if (!index) {
      origin = 'indexed';
      const made = await indexImage(source, {
        resolved: image, cacheDir,
        ...(opts.logger ? { logger: opts.logger } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
      index = made.index;
      indexFile = made.cachedAt;
    }
    return {
      index, origin, ...(indexFile ? { indexFile } : {}), cacheDir, blobs: source, layers: indexLayers(index),
      close: async () => { await source.close?.(); },
    };
  } catch (err) {
    await source.close?.();
    throw err;
  }
}

/** The storage read path over an opened image's blobs (close it before the image). */
export function openImageStorage(img: OpenedImage, opts: { remoteCache?: string; logger?: Logger } = {}): Promise<Storage> {
  return openStorage({
    source: new CheckpointSource(img.blobs),
    cacheDir: img.cacheDir,
    ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
}

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

/** What a reading command's action starts with: a logger, and the image opened with a progress display if it must be indexed. */
export async function openForCommand(arg: string, opts: ReadCommandOptions): Promise<{ img: OpenedImage; logger: Logger }> {
  const logger = createLogger(opts.logLevel);
  // Made on the first indexing event: a cached or given index shows no progress at all.
  let progress: Progress | undefined;
  let report: ((e: IndexProgress) => void) | undefined;
  try {
    const img = await openImageArg(arg, {
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
      registry: { insecureRegistries: opts.insecureRegistry ?? [] },
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
