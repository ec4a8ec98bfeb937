/**
 * Storage: one read path over the disk cache, the shared Redis cache and a source (the registry
 * through checkpoints, or a local uncompressed layer).
 *
 *   const storage = await openStorage({ source: new CheckpointSource(blobStore), remoteCache: 'redis://...' });
 *   const bytes = await storage.read(layer, offset, length);
 *   await storage.close({ flushMs: 2000 });
 */
import { stat } from 'node:fs/promises';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { defaultCacheDir } from './cache-dir.js';
import { DiskCache, type CachedLayerReport, type CacheStats, type GcResult } from './disk-cache.js';
import { StorageMetrics } from './metrics.js';
import { compactStats, readStats, type Counters } from './stats-log.js';
import { Storage } from './storage.js';
import type { LayerSource } from './types.js';

export { defaultCacheDir, ensurePrivateDir } from './cache-dir.js';
export { DiskCache, type CacheStats, type CachedLayerInfo, type CachedLayerReport, type GcResult, type LayerLease, type DiskCacheOptions } from './disk-cache.js';
export { startBackgroundFetch, DEFAULT_BACKGROUND_RATE, type BackgroundFetch, type BackgroundFetchOptions } from './background-fetch.js';
export { recordStats, readStats, compactStats, statsDir, type Counters, type StatsTotals } from './stats-log.js';
export { StorageMetrics, type Tier } from './metrics.js';
// The Redis tier (and ioredis) loads only when a remote cache is configured: import it from './remote-cache.js'.
export type { RedisChunkCache, RemoteCacheOptions } from './remote-cache.js';
export { parseRedisUrl, type RedisTarget } from './redis-url.js';
export { Storage, type StorageOptions, type ReadOptions } from './storage.js';
export { CheckpointSource, layerFromScan, isResumable, type ResumableLayer, type CompressedRange } from './checkpoint-source.js';
export { FileLayerSource, UncompressedBlobSource } from './file-source.js';
export { indexLayers } from './index-layers.js';
export { layerRecord, chunkCount, chunkLength, type LayerRecord, type LayerRecordFields, type LayerSource } from './types.js';

export interface StorageConfig {
  source: LayerSource;
  /** Default: defaultCacheDir(). */
  cacheDir?: string;
  cacheMaxBytes?: number;
  /** fdatasync each chunk before marking it present (survives power loss). */
  durable?: boolean;
  /** Share open layer files and chunk fetches with the other shared stores on the directory (DiskCacheOptions.shared). */
  shareLayers?: boolean;
  /** redis://, rediss://, redis+cluster://; none by default. */
  remoteCache?: string;
  remotePrefix?: string;
  remoteTtlSeconds?: number;
  remoteTimeoutMs?: number;
  readTimeoutMs?: number;
  /** How often a long-lived store adds its counters to CACHE_DIR/stats/ (besides at close). */
  statsIntervalMs?: number;
  metrics?: StorageMetrics;
  logger?: Logger;
}

export async function openStorage(cfg: StorageConfig): Promise<Storage> {
  const metrics = cfg.metrics ?? new StorageMetrics();
  const disk = await DiskCache.open({
    dir: cfg.cacheDir ?? defaultCacheDir(),
    ...(cfg.cacheMaxBytes !== undefined ? { maxBytes: cfg.cacheMaxBytes } : {}),
    ...(cfg.durable ? { durable: true } : {}),
    ...(cfg.shareLayers ? { shared: true } : {}),
    metrics,
    ...(cfg.logger ? { logger: cfg.logger } : {}),
  });
  const remote = cfg.remoteCache
    ? await (await import('./remote-cache.js')).RedisChunkCache.connect({
        url: cfg.remoteCache,
        metrics,
        ...(cfg.remotePrefix !== undefined ? { prefix: cfg.remotePrefix } : {}),
        ...(cfg.remoteTtlSeconds !== undefined ? { ttlSeconds: cfg.remoteTtlSeconds } : {}),
        ...(cfg.remoteTimeoutMs !== undefined ? { commandTimeoutMs: cfg.remoteTimeoutMs } : {}),
        ...(cfg.logger ? { logger: cfg.logger } : {}),
      }).catch(async (err: unknown) => {
        await disk.close();
        throw err;
      })
    : undefined;
  try {
    return new Storage({
      disk,
      ...(remote ? { remote } : {}),
      source: cfg.source,
      metrics,
      ...(cfg.readTimeoutMs !== undefined ? { readTimeoutMs: cfg.readTimeoutMs } : {}),
      ...(cfg.statsIntervalMs !== undefined ? { statsIntervalMs: cfg.statsIntervalMs } : {}),
      ...(cfg.logger ? { logger: cfg.logger } : {}),
    });
  } catch (err) {
    // A bad setting (EINVAL): what was opened for it is closed, not left to a long-lived server.
    await remote?.close().catch(() => undefined);
    await disk.close();
    throw err;
  }
}

/** For `clip cache stats`: layers and allocated bytes under `dir`. */
export async function cacheStats(dir = defaultCacheDir()): Promise<CacheStats> {
  const disk = await DiskCache.open({ dir });
  try {
    return await disk.stats();
  } finally {
    await disk.close();
  }
}

export interface CacheReport extends CacheStats {
  /** One row per cached layer, least recently used first. */
  rows: CachedLayerReport[];
  /** Counters summed over every process that used this directory ("hits.disk", "bytes.source", ...). */
  counters: Counters;
  /** Stats records summed. */
  records: number;
}

/** For `clip cache stats`: the layers with their presence, and the tiers' counters over all processes. */
/** Inspecting or collecting a cache that does not exist is a mistake to report, not a directory to make. */
async function requireCacheDir(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) throw new ClipError('ENOTFOUND', 'no such cache directory', { object: dir });
  if (!st.isDirectory()) throw new ClipError('EINVAL', 'not a directory', { object: dir });
}

export async function cacheReport(dir = defaultCacheDir()): Promise<CacheReport> {
  await requireCacheDir(dir);
  const disk = await DiskCache.open({ dir });
  try {
    const rows = (await disk.describe()).sort((a, b) => a.atimeMs - b.atimeMs);
    const totals = await readStats(dir);
    return { dir, layers: rows.length, bytes: rows.reduce((n, r) => n + r.bytes, 0), rows, counters: totals.counters, records: totals.records };
  } finally {
    await disk.close();
  }
}

export interface CacheGcResult extends GcResult {
  /** Stats records folded into one. */
  statsRecordsCompacted: number;
  /** Temporary index files that killed writers left in indexes/. */
  staleIndexTempsRemoved: number;
}

/**
 * For `clip cache gc`: evict least recently used layers until at most `maxBytes` remain (0: all;
 * Infinity: none), then fold the stats records into one.
 */
export async function cacheGc(maxBytes: number, dir = defaultCacheDir()): Promise<CacheGcResult> {
  await requireCacheDir(dir);
  const disk = await DiskCache.open({ dir });
  try {
    const gc = await disk.gc(maxBytes);
    const { absorbed } = await compactStats(dir);
    // Loaded here: the index writer it comes from has no place in the server, which imports this module.
    const { removeStaleIndexTemps } = await import('./index-temps.js');
    return { ...gc, statsRecordsCompacted: absorbed, staleIndexTempsRemoved: await removeStaleIndexTemps(dir) };
  } finally {
    await disk.close();
  }
}
