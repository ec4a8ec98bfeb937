/**
 * Indexing an image end to end: resolve it, stream every layer once from its source into the
 * archive scanner (worker threads, several layers at a time), check each scan against the manifest
 * and the config, merge bottom-up into an index. Layers are never held in memory: each flows from
 * the blob store to a scan worker, and only what the index keeps of a scan waits for the layers
 * below it to be merged.
 *
 * Indexes are cached per manifest digest under CACHE_DIR/indexes/, written atomically.
 */
import os from 'node:os';
import path from 'node:path';
import { scanLayerInWorker } from '../archive/scan-pool.js';
import { isBlobMismatch } from '../archive/scan.js';
import type { LayerScan } from '../archive/types.js';
import { MAX_CHUNK_SIZE, MAX_LAYER_BYTES, MIN_CHUNK_SIZE } from '../index/limits.js';
import { imageInfoOf, indexedLayerOf } from '../index/meta.js';
import { ImageIndex } from '../index/reader.js';
import { IndexBuilder, writeIndexFile } from '../index/writer.js';
import type { ImageSource, Layer, Platform, ResolvedImage } from '../oci/types.js';
import { ClipError, isClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { ensurePrivateDir, isDiskFull } from './cache-dir.js';
import { removeStaleIndexTemps } from './index-temps.js';
import type { RedisChunkCache } from './remote-cache.js';
import { loadScan, storeScan, type ScanCache } from './scan-cache.js';
import { digestHex } from './types.js';

export type IndexProgress =
  /** Once, after the image is resolved: how much there is to read. */
  | { kind: 'start'; layers: number; totalBytes: number }
  /** Compressed bytes read from the source since the last event, across all layers. */
  | { kind: 'bytes'; bytes: number }
  | { kind: 'layer'; layer: number; digest: string; layersDone: number; layers: number };

export interface IndexImageOptions {
  platform?: Platform;
  /** The image already resolved from this source (saves the manifest requests). */
  resolved?: ResolvedImage;
  /** Output between periodic gzip checkpoints. */
  span?: number;
  chunkSize?: number;
  bigFileThreshold?: number;
  /** Most bytes one layer may inflate to (default DEFAULT_MAX_INFLATED, 64 GiB; at most MAX_LAYER_BYTES). */
  maxInflated?: number;
  /** Most tar entries one layer may hold (default DEFAULT_MAX_ENTRIES, 4 M). */
  maxEntries?: number;
  /** Layers read at once; default: os.availableParallelism(). */
  concurrency?: number;
  /** Also write the index file here (atomically). */
  output?: string;
  /** Also store the index in this cache directory's indexes/ (atomically). */
  cacheDir?: string;
  logger?: Logger;
  onProgress?: (event: IndexProgress) => void;
  signal?: AbortSignal;
  /** The shared cache: layer scans are looked for and kept there too. */
  remote?: RedisChunkCache;
  /** Take a layer's scan from CACHE_DIR/scans or the shared cache when one was kept (default true). */
  reuseScans?: boolean;
}

export interface IndexedImage {
  bytes: Buffer;
  index: ImageIndex;
  image: ResolvedImage;
  /** Where the cache copy went, when cacheDir was given. */
  cachedAt?: string;
}

/** CACHE_DIR/indexes/<manifest digest hex>.clip */
export function cachedIndexPath(cacheDir: string, manifestDigest: string): string {
  return path.join(cacheDir, 'indexes', `${digestHex(manifestDigest, 'manifest digest')}.clip`);
}

/**
 * The cached index of a manifest, or undefined when there is none. A cached file that fails to
 * load (truncated by a crash before rename cannot happen, but a disk can corrupt) is ignored.
 */
export async function loadCachedIndex(cacheDir: string, manifestDigest: string, logger: Logger = silentLogger): Promise<ImageIndex | undefined> {
  const file = cachedIndexPath(cacheDir, manifestDigest);
  try {
    const index = await ImageIndex.open(file);
    if (index.image.manifestDigest !== manifestDigest) {
      logger.warn({ file, manifestDigest, recorded: index.image.manifestDigest }, 'cached index is for another manifest; ignoring it');
      return undefined;
    }
    return index;
  } catch (err) {
    if (isClipError(err, 'ENOTFOUND')) return undefined;
    logger.warn({ file, err: (err as Error).message }, 'cached index unreadable; indexing again');
    return undefined;
  }
}

/**
 * Store index bytes in the cache directory; returns the path. Temporaries that writers killed
 * mid-write left there are removed on the way (nothing else would ever remove them).
 */
export async function storeCachedIndex(cacheDir: string, manifestDigest: string, bytes: Buffer, logger: Logger = silentLogger): Promise<string> {
  const file = cachedIndexPath(cacheDir, manifestDigest);
  await ensurePrivateDir(path.dirname(file));
  await removeStaleIndexTemps(cacheDir, logger);
  await writeIndexFile(file, bytes);
  return file;
}

/** Read every layer of the image once and build its index. */
export async function indexImage(source: ImageSource, opts: IndexImageOptions = {}): Promise<IndexedImage> {
  const log = opts.logger ?? silentLogger;
  checkLimits(opts);
  const image = opts.resolved ?? (await source.resolve(opts.platform ? { platform: opts.platform } : {}));
  const layers = image.layers;
  const totalBytes = layers.reduce((n, l) => n + l.descriptor.size, 0);
  opts.onProgress?.({ kind: 'start', layers: layers.length, totalBytes });
  log.info({ image: image.reference, manifest: image.manifestDigest, layers: layers.length, bytes: totalBytes }, 'indexing');

  const builder = new IndexBuilder(imageInfoOf(image));
  // Scans finish in any order; the merge takes them bottom first.
  const finished = new Map<number, LayerScan>();
  let merged = 0;
  let done = 0;
  const mergeReady = (): void => {
    for (let scan = finished.get(merged); scan; scan = finished.get(merged)) {
      finished.delete(merged);
      builder.addLayer(indexedLayerOf(layers[merged]!, scan), scan);
      merged++;
    }
  };

  const scans: ScanCache = { ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}), ...(opts.remote ? { remote: opts.remote } : {}), logger: log };
  const controller = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, controller.signal]) : controller.signal;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < layers.length && !signal.aborted) {
      const i = next++;
      const layer = layers[i]!;
      // A layer scanned before (here, or by any node sharing the cache) is not read again.
      const reused = opts.reuseScans === false ? undefined : await loadScan(layer, opts, scans);
      let scan: LayerScan;
      if (reused) {
        scan = reused.scan;
        opts.onProgress?.({ kind: 'bytes', bytes: layer.descriptor.size });
        log.debug({ layer: layer.descriptor.digest, from: reused.from }, 'layer scan reused');
      } else {
        scan = await scanOne(source, layer, i, opts, signal);
        if (opts.reuseScans !== false) await storeScan(layer, opts, scan, scans);
      }
      finished.set(i, scan);
      done++;
      opts.onProgress?.({ kind: 'layer', layer: i, digest: layers[i]!.descriptor.digest, layersDone: done, layers: layers.length });
      log.debug({ layer: layers[i]!.descriptor.digest, entries: scan.entries.length, uncompressed: scan.uncompressedSize }, 'layer scanned');
      mergeReady();
    }
  };
  const width = Math.max(1, Math.min(opts.concurrency ?? os.availableParallelism(), layers.length));
  const results = await Promise.allSettled(Array.from({ length: width }, async () => {
    try {
      await worker();
    } catch (err) {
      controller.abort(err); // stop the other layers' streams: one failure fails the index
      throw err;
    }
  }));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
  if (opts.signal?.aborted) throw new ClipError('EINVAL', 'indexing was cancelled', { object: image.reference, cause: opts.signal.reason });
  mergeReady();

  const bytes = builder.build();
  const index = new ImageIndex(bytes, opts.output ?? image.reference);
  if (opts.output) await writeIndexFile(opts.output, bytes);
  let cachedAt: string | undefined;
  try {
    cachedAt = opts.cacheDir ? await storeCachedIndex(opts.cacheDir, image.manifestDigest, bytes, log) : undefined;
  } catch (err) {
    // A full cache disk costs caching only: the index is in memory, and serves as it is.
    if (!isDiskFull(err)) throw err;
    log.warn({ err, image: image.reference }, 'the index is not cached: the cache disk is full');
  }
  log.info({ image: image.reference, entries: index.entryCount, bytes: bytes.length }, 'indexed');
  return { bytes, index, image, ...(cachedAt ? { cachedAt } : {}) };
}

/** Options outside what an index can record (the reader would refuse it) are refused before anything is read. */
export function checkLimits(opts: Pick<IndexImageOptions, 'maxInflated' | 'maxEntries' | 'chunkSize'>): void {
  const { maxInflated, maxEntries, chunkSize } = opts;
  if (chunkSize !== undefined && !(Number.isSafeInteger(chunkSize) && chunkSize >= MIN_CHUNK_SIZE && chunkSize <= MAX_CHUNK_SIZE && (chunkSize & (chunkSize - 1)) === 0)) {
    throw new ClipError('EINVAL', `the chunk size must be a power of two between ${MIN_CHUNK_SIZE} and ${MAX_CHUNK_SIZE}`, { object: String(chunkSize) });
  }
  if (maxInflated !== undefined && !(Number.isSafeInteger(maxInflated) && maxInflated > 0 && maxInflated <= MAX_LAYER_BYTES)) {
    throw new ClipError('EINVAL', `the inflated bytes limit must be between 1 and ${MAX_LAYER_BYTES} (1 TiB)`, { object: String(maxInflated) });
  }
  if (maxEntries !== undefined && !(Number.isSafeInteger(maxEntries) && maxEntries > 0)) {
    throw new ClipError('EINVAL', 'the entries limit must be a positive integer', { object: String(maxEntries) });
  }
}

/** Downloads of one layer before a digest mismatch is final: a flipped byte in transit is worth another try, a wrong blob is not worth many. */
export const LAYER_ATTEMPTS = 3;

/**
 * Stream one layer from the source into a scan worker; the scan checks the blob's digest and size
 * and the diff_id (so that damage in transit is reported as EDIGEST, not as the tar or inflate error
 * it caused). An EDIGEST is retried with a fresh download, up to LAYER_ATTEMPTS in all.
 */
async function scanOne(source: ImageSource, layer: Layer, i: number, opts: IndexImageOptions, signal: AbortSignal): Promise<LayerScan> {
  const log = opts.logger ?? silentLogger;
  for (let attempt = 1; ; attempt++) {
    try {
      return await scanAttempt(source, layer, i, opts, signal);
    } catch (err) {
      if (!isBlobMismatch(err) || attempt >= LAYER_ATTEMPTS || signal.aborted) throw err;
      log.warn({ layer: layer.descriptor.digest, attempt, err: (err as Error).message }, 'layer download did not match its digest; downloading it again');
    }
  }
}

async function scanAttempt(source: ImageSource, layer: Layer, i: number, opts: IndexImageOptions, signal: AbortSignal): Promise<LayerScan> {
  const digest = layer.descriptor.digest;
  let reported = 0;
  const blob = await source.openBlob(layer.descriptor, { signal });
  const abort = (): void => void blob.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal.addEventListener('abort', abort, { once: true });
  try {
    return await scanLayerInWorker(blob, {
      compression: layer.compression,
      name: digest,
      expect: { digest, size: layer.descriptor.size, diffId: layer.diffId },
      packWindows: true,
      ...(opts.maxInflated !== undefined ? { maxInflated: opts.maxInflated } : {}),
      ...(opts.maxEntries !== undefined ? { maxEntries: opts.maxEntries } : {}),
      ...(opts.span !== undefined ? { span: opts.span } : {}),
      ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
      ...(opts.bigFileThreshold !== undefined ? { bigFileThreshold: opts.bigFileThreshold } : {}),
      onProgress: (n) => {
        opts.onProgress?.({ kind: 'bytes', bytes: n - reported });
        reported = n;
      },
    });
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (isClipError(err)) throw err;
    throw new ClipError('ENETWORK', `reading layer ${i} failed: ${(err as Error).message}`, { object: digest, cause: err });
  } finally {
    signal.removeEventListener('abort', abort);
    blob.destroy();
  }
}
