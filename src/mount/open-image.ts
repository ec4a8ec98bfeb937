/**
 * An image argument as the commands and the mount take it: an index file is loaded as it is (its
 * blobs are reached lazily through the location it records, so everything already cached is served
 * without the registry); an image reference is resolved, and its cached index used or made.
 */
import { open } from 'node:fs/promises';
import { MAGIC } from '../index/format.js';
import { ImageIndex } from '../index/reader.js';
import { openBlobStore, openImage, type BlobStore, type ImageSource, type OpenOptions, type Platform } from '../oci/index.js';
import { indexLayers } from '../storage/index-layers.js';
import { indexImage, loadCachedIndex, type IndexProgress } from '../storage/indexer.js';
import { CheckpointSource, defaultCacheDir, openStorage, type ResumableLayer, type Storage } from '../storage/index.js';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

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

export interface ImageStorageOptions {
  remoteCache?: string;
  /** Cap on the disk cache; least recently used layers are evicted beyond it. */
  cacheMaxBytes?: number;
  readTimeoutMs?: number;
  logger?: Logger;
}

/** The storage read path over an opened image's blobs (close it before the image). */
export function openImageStorage(img: OpenedImage, opts: ImageStorageOptions = {}): Promise<Storage> {
  return openStorage({
    source: new CheckpointSource(img.blobs),
    cacheDir: img.cacheDir,
    ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
    ...(opts.cacheMaxBytes !== undefined ? { cacheMaxBytes: opts.cacheMaxBytes } : {}),
    ...(opts.readTimeoutMs !== undefined ? { readTimeoutMs: opts.readTimeoutMs } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
}
