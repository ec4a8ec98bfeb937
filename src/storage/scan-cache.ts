/**
 * What scanning one layer produced (entries, checkpoints, chunk digests), kept for reuse: an image
 * built on a common base then indexes in time proportional to its own layers. Kept in the cache
 * directory (CACHE_DIR/scans/) and in the shared cache, so a layer any node scanned is not read
 * again by another.
 *
 * Keyed by the blob digest, not the diff_id: checkpoints are positions in the compressed blob, so
 * two compressions of one layer have different ones. The key also holds what shapes a scan (span,
 * chunk size, big-file threshold) and this format's version. A stored scan is trusted as the index
 * made from it would be (the index is checked whole at load, and audited against the layer once it
 * is complete); it must at least name the blob, size and diff_id it is used for.
 */
import { readFile, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { DEFAULT_BIG_FILE, DEFAULT_CHUNK_SIZE, DEFAULT_SPAN } from '../archive/scan.js';
import type { LayerScan } from '../archive/types.js';
import type { Layer } from '../oci/types.js';
import { silentLogger, type Logger } from '../util/log.js';
import { ensurePrivateDir, writePrivateFile } from './cache-dir.js';
import type { RedisChunkCache } from './remote-cache.js';
import { digestHex } from './types.js';

/** The format of kept scans; `clip cache gc` removes kept scans of any other. */
export const SCAN_FORMAT = 'scan-v4'; // v2: windows packed by archive/window-codec.ts (brotli); v3: sparse windows; v4: block boundaries
/** Largest stored scan inflated back (a crafted one must not take the process's memory). */
const MAX_SCAN_BYTES = 1024 * 1024 * 1024;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

export interface ScanSettings {
  span?: number;
  chunkSize?: number;
  bigFileThreshold?: number;
}

export interface ScanCache {
  cacheDir?: string;
  remote?: RedisChunkCache;
  logger?: Logger;
}

export function scanKey(layer: Layer, s: ScanSettings): string {
  const hex = digestHex(layer.descriptor.digest, 'layer digest');
  return `${hex}-s${s.span ?? DEFAULT_SPAN}-c${s.chunkSize ?? DEFAULT_CHUNK_SIZE}-b${s.bigFileThreshold ?? DEFAULT_BIG_FILE}-${SCAN_FORMAT}`;
}

const filePath = (cacheDir: string, key: string): string => path.join(cacheDir, 'scans', `${key}.scan`);
const remoteKey = (key: string): string => `clip:scan:${key}`;

/** A stored scan of `layer` (locally, else in the shared cache), or undefined. Never throws. */
export async function loadScan(layer: Layer, settings: ScanSettings, cache: ScanCache): Promise<{ scan: LayerScan; from: 'local' | 'shared' } | undefined> {
  const log = cache.logger ?? silentLogger;
  const key = scanKey(layer, settings);
  const places: ['local' | 'shared', () => Promise<Buffer | null | undefined>][] = [];
  if (cache.cacheDir) places.push(['local', () => readFile(filePath(cache.cacheDir!, key)).catch(() => undefined)]);
  if (cache.remote) places.push(['shared', () => cache.remote!.fetchValue(remoteKey(key))]);
  for (const [from, read] of places) {
    const packed = await read();
    if (!packed) continue;
    try {
      const scan = deserialize(await gunzipAsync(packed, { maxOutputLength: MAX_SCAN_BYTES })) as LayerScan;
      if (scan?.digest !== layer.descriptor.digest || scan.diffId !== layer.diffId || scan.compressedSize !== layer.descriptor.size
        || scan.compression !== layer.compression || !Array.isArray(scan.entries) || !Array.isArray(scan.checkpoints) || !Buffer.isBuffer(scan.chunkDigests)) {
        throw new Error('it describes another layer');
      }
      // Its last use, for `clip cache gc` (least recently used first, as layer files): atime is
      // not updated by reads on most mounts (relatime, noatime), so it is set here.
      if (from === 'local') {
        const file = filePath(cache.cacheDir!, key);
        const st = await stat(file).catch(() => undefined);
        if (st) await utimes(file, new Date(), st.mtime).catch(() => undefined);
      }
      return { scan, from };
    } catch (err) {
      log.warn({ layer: layer.descriptor.digest, from, err: (err as Error).message }, 'stored layer scan unusable: scanning the layer');
      if (from === 'local') await unlink(filePath(cache.cacheDir!, key)).catch(() => undefined);
    }
  }
  return undefined;
}

/** Keep `scan` locally and in the shared cache; a failure costs only the reuse (logged). */
export async function storeScan(layer: Layer, settings: ScanSettings, scan: LayerScan, cache: ScanCache): Promise<void> {
  const log = cache.logger ?? silentLogger;
  const key = scanKey(layer, settings);
  try {
    const packed = await gzipAsync(serialize(scan));
    if (cache.cacheDir) {
      const file = filePath(cache.cacheDir, key);
      await ensurePrivateDir(path.dirname(file));
      await writePrivateFile(file, packed);
    }
    if (cache.remote) await cache.remote.storeValue(remoteKey(key), packed);
  } catch (err) {
    log.warn({ layer: layer.descriptor.digest, err: (err as Error).message }, 'cannot keep the layer scan for reuse');
  }
}
