/**
 * Tier 1: CACHE_DIR/layers/sha256_<hex of diff_id>-<chunk table binding>, one LayerFile per
 * uncompressed layer and chunk table, shared by every image (and every process) that contains it.
 *
 * Eviction removes whole layers, least recently used first (atime, set explicitly on use at most
 * every `touchIntervalMs`). It only unlinks: a read in flight holds an open fd on the old inode and
 * finishes on it. Handles notice that their file was evicted (by us or another process) when they
 * next touch it, and are reopened on the path for later reads.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { ensurePrivateDir } from './cache-dir.js';
import { cacheFileName, countPresent, LayerFile, layerMetaPath, newSharedLayerState, readLayerMeta, UncachedLayer, type CachedLayer } from './layer-file.js';
import type { StorageMetrics } from './metrics.js';
import type { LayerRecord } from './types.js';

const LAYER_NAME = /^sha256_([0-9a-f]{64})-[0-9a-f]{32}$/;
/** Beside a layer file: its metadata (<name>.json) and that file's temporaries (<name>.<hex>.tmp). */
const SIDE_FILE = /^(sha256_[0-9a-f]{64}-[0-9a-f]{32})\.(?:json|[0-9a-f]+\.tmp)$/;
/** A layer file of the format before chunk tables were bound into the name: never trusted, removed by gc. */
const UNBOUND_NAME = /^sha256_[0-9a-f]{64}(?:\.json)?$/;
/** CACHE_DIR/scans/: a kept layer scan (scan-cache.ts), its format version, and its writers' temporaries. */
const SCAN_NAME = /^[0-9a-f]{64}-s\d+-c\d+-b\d+-(scan-v\d+)\.scan$/;
const SCAN_TMP = /\.scan\.[0-9a-f]+\.tmp$/;
/** CACHE_DIR/windows/: the fetched checkpoint windows of a published index (checkpoint-windows.ts). */
const WINDOWS_NAME = /^[0-9a-f]{64}\.windows$/;
/** A temporary this old belongs to a writer that died. */
const STALE_TMP_MS = 10 * 60_000;

export interface DiskCacheOptions {
  dir: string;
  /** Evict least recently used layers when the cache holds more than this (allocated bytes). */
  maxBytes?: number;
  /** fdatasync each chunk before marking it present: survives power loss, not just kill -9. */
  durable?: boolean;
  /**
   * Share open layer files (one fd and one per-chunk state per layer file) and chunk fetches in
   * flight with every other shared DiskCache on the same directory in this process: the node
   * server's mounts of images with common layers. A layer file is closed when the last cache that
   * used it is closed.
   */
  shared?: boolean;
  touchIntervalMs?: number;
  logger?: Logger;
  metrics?: StorageMetrics;
}

export interface CachedLayerInfo {
  name: string;
  path: string;
  /** Bytes allocated on disk (sparse files count what is really there). */
  bytes: number;
  atimeMs: number;
}

/** A cached layer as `clip cache stats` shows it (chunk figures when its metadata is readable). */
export interface CachedLayerReport extends CachedLayerInfo {
  diffId: string;
  /** The uncompressed layer's size. */
  size?: number;
  chunkSize?: number;
  presentChunks?: number;
  totalChunks?: number;
}

export interface CacheStats {
  dir: string;
  layers: number;
  bytes: number;
}

export interface GcResult {
  /** Layer files removed. */
  evicted: number;
  /** Kept layer scans (CACHE_DIR/scans/) removed: by the same LRU rule, or of a format no longer read. */
  scansEvicted: number;
  /** Checkpoint windows files (CACHE_DIR/windows/, fetched windows of published indexes) removed, by the same LRU rule. */
  windowsEvicted: number;
  /** Bytes freed and remaining, layers, scans and windows files together. */
  freedBytes: number;
  remainingBytes: number;
}

/** What gc weighs: a layer file, a kept layer scan or a windows file, by size and last use. */
interface GcItem extends CachedLayerInfo {
  kind: 'layer' | 'scan' | 'windows';
}

interface Entry {
  key: string;
  file: LayerFile;
  /** Leases in flight. */
  refs: number;
  /** DiskCaches that used the entry and are not closed yet. */
  users: number;
  stale: boolean;
  closed: boolean;
  lastTouch: number;
}

/** A chunk being fetched, joined by whoever else needs it; `owner` is the store fetching it. */
export interface InflightChunk {
  promise: Promise<Buffer>;
  owner: object;
}

/** The open layer files of one cache directory, and the chunk fetches in flight on them. */
class OpenLayers {
  readonly entries = new Map<string, Entry>();
  readonly opening = new Map<string, Promise<Entry>>();
  /** By `<layer file name>/<chunk>`: a chunk table digest is in the name, so a joiner gets bytes verified against its own table. */
  readonly inflight = new Map<string, InflightChunk>();
  /** Per layer file name, the verified marks shared with FUSE reader threads (layer-file.ts). */
  readonly marks = new Map<string, SharedArrayBuffer>();
  /** DiskCaches open on it (shared ones only). */
  caches = 0;
}

/** Shared OpenLayers by cache directory (and the options that change how files are written). */
const sharedLayers = new Map<string, OpenLayers>();

/** A handle on one cached layer; call release() when the read is done. */
export interface LayerLease {
  readonly file: CachedLayer;
  release(): void;
}

export class DiskCache {
  readonly dir: string;
  readonly layersDir: string;
  private readonly opts: DiskCacheOptions;
  private readonly log: Logger;
  private readonly open: OpenLayers;
  private readonly sharedKey: string | undefined;
  /** Entries this cache used: released when it closes. */
  private readonly used = new Set<Entry>();
  private closed = false;
  private estimatedBytes: number | undefined;
  private gcRunning: Promise<GcResult> | undefined;
  /** Bytes written while a gc runs: its listing may predate them, so they are added when it ends. */
  private writtenDuringGc = 0;

  private constructor(opts: DiskCacheOptions) {
    this.opts = opts;
    this.dir = opts.dir;
    this.layersDir = path.join(opts.dir, 'layers');
    this.log = opts.logger ?? silentLogger;
    if (opts.shared) {
      this.sharedKey = `${path.resolve(opts.dir)}\0${opts.durable === true}`;
      let open = sharedLayers.get(this.sharedKey);
      if (!open) sharedLayers.set(this.sharedKey, (open = new OpenLayers()));
      open.caches++;
      this.open = open;
    } else {
      this.open = new OpenLayers();
    }
  }

  private get entries(): Map<string, Entry> {
    return this.open.entries;
  }

  /** Chunk fetches in flight on this directory's layers (shared with the other shared caches on it). */
  get inflight(): Map<string, InflightChunk> {
    return this.open.inflight;
  }

  /** Layer files open (for tests and status: shared caches count each once). */
  get openLayerFiles(): number {
    return this.open.entries.size;
  }

  static async open(opts: DiskCacheOptions): Promise<DiskCache> {
    const cache = new DiskCache(opts);
    await ensurePrivateDir(cache.dir);
    await ensurePrivateDir(cache.layersDir);
    return cache;
  }

  pathOf(layer: LayerRecord): string {
    return path.join(this.layersDir, cacheFileName(layer));
  }

  /**
   * The shared verified state of the layer's cache file (see newSharedLayerState): whichever
   * LayerFile of this directory holds the layer (shared caches share it) keeps it up to date, so other threads may serve the
   * chunks it marks straight from the file at pathOf(layer).
   */
  sharedState(layer: LayerRecord): SharedArrayBuffer {
    const key = cacheFileName(layer);
    let sab = this.open.marks.get(key);
    if (!sab) this.open.marks.set(key, (sab = newSharedLayerState(layer)));
    return sab;
  }

  /** The lease without waiting, if the layer's file is already open (the hot path of cached reads). */
  tryAcquire(layer: LayerRecord): LayerLease | undefined {
    const key = cacheFileName(layer);
    const entry = this.entries.get(key);
    if (!entry || entry.stale) return undefined;
    return this.lease(key, entry);
  }

  /**
   * A lease on the layer's cache file. If the file cannot be opened (permissions, a read-only or
   * broken cache directory), the lease caches nothing and reads go to the slower tiers.
   */
  async acquire(layer: LayerRecord): Promise<LayerLease> {
    const key = cacheFileName(layer);
    let entry = this.entries.get(key);
    if (!entry || entry.stale) {
      let pending = this.open.opening.get(key);
      if (!pending) {
        pending = this.openEntry(layer).finally(() => this.open.opening.delete(key));
        this.open.opening.set(key, pending);
      }
      try {
        entry = await pending;
      } catch (err) {
        this.opts.metrics?.errors.inc({ tier: 'disk' });
        this.log.warn({ layer: layer.diffId, tier: 'disk', err: (err as Error).message }, 'disk cache unusable for this layer; reading through');
        return { file: new UncachedLayer(layer, this.pathOf(layer)), release: () => {} };
      }
    }
    return this.lease(key, entry);
  }

  private lease(key: string, entry: Entry): LayerLease {
    if (!this.used.has(entry)) {
      this.used.add(entry);
      entry.users++;
    }
    entry.refs++;
    this.maybeTouch(key, entry);
    const e = entry;
    let released = false;
    return {
      file: e.file,
      release: () => {
        if (released) return;
        released = true;
        e.refs--;
        if (e.stale && e.refs === 0) closeEntry(e);
      },
    };
  }

  /** Account for bytes just written; evicts in the background once over the cap. */
  noteWritten(bytes: number): void {
    const max = this.opts.maxBytes;
    if (max === undefined) return;
    if (this.gcRunning) {
      this.writtenDuringGc += bytes;
      return;
    }
    if (this.estimatedBytes === undefined) {
      void this.backgroundGc();
      return;
    }
    this.estimatedBytes += bytes;
    if (this.estimatedBytes > max) void this.backgroundGc();
  }

  private backgroundGc(): Promise<unknown> {
    return this.gc().catch((err: unknown) => this.log.warn({ err }, 'cache gc failed'));
  }

  /** Evict least recently used layers until the cache holds at most `maxBytes` (default: 90 % of the cap). */
  gc(maxBytes?: number): Promise<GcResult> {
    if (this.gcRunning) return this.gcRunning;
    const target = maxBytes ?? (this.opts.maxBytes === undefined ? Infinity : Math.floor(this.opts.maxBytes * 0.9));
    this.writtenDuringGc = 0;
    this.gcRunning = this.runGc(target).finally(() => {
      this.gcRunning = undefined;
      // What was written meanwhile counts now (twice if the listing saw it: the next gc measures
      // again); lost, it left a cache over its cap until more writes came.
      const during = this.writtenDuringGc;
      this.writtenDuringGc = 0;
      if (during === 0 || this.estimatedBytes === undefined) return;
      this.estimatedBytes += during;
      if (this.opts.maxBytes !== undefined && this.estimatedBytes > this.opts.maxBytes) void this.backgroundGc();
    });
    return this.gcRunning;
  }

  async list(): Promise<CachedLayerInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.layersDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: CachedLayerInfo[] = [];
    for (const name of names) {
      if (!LAYER_NAME.test(name)) continue;
      const p = path.join(this.layersDir, name);
      try {
        const st = await stat(p);
        out.push({ name, path: p, bytes: st.blocks * 512, atimeMs: st.atimeMs });
      } catch {
        // evicted meanwhile
      }
    }
    return out;
  }

  /** Every cached layer with its presence (chunks marked present for the chunk size it was last grown with). */
  async describe(): Promise<CachedLayerReport[]> {
    const out: CachedLayerReport[] = [];
    for (const l of await this.list()) {
      const row: CachedLayerReport = { ...l, diffId: diffIdOf(l.name) };
      const meta = await readLayerMeta(l.path);
      if (meta && meta.diffId === row.diffId) {
        const counted = await countPresent(l.path, meta).catch(() => undefined);
        Object.assign(row, { size: meta.uncompressedSize, chunkSize: meta.chunkSize });
        if (counted) Object.assign(row, { presentChunks: counted.present, totalChunks: counted.total });
      }
      out.push(row);
    }
    return out;
  }

  async stats(): Promise<CacheStats> {
    const layers = await this.list();
    return { dir: this.dir, layers: layers.length, bytes: layers.reduce((n, l) => n + l.bytes, 0) };
  }

  /** Close the layer files no other cache uses (those still leased close on release). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.gcRunning?.catch(() => {});
    const closing: Promise<void>[] = [];
    for (const e of this.used) {
      if (--e.users > 0) continue;
      if (this.entries.get(e.key) === e) this.entries.delete(e.key);
      e.stale = true;
      if (e.refs === 0) closing.push(closeEntry(e));
    }
    this.used.clear();
    if (this.sharedKey !== undefined && --this.open.caches === 0) sharedLayers.delete(this.sharedKey);
    await Promise.all(closing);
  }

  private async openEntry(layer: LayerRecord): Promise<Entry> {
    const key = cacheFileName(layer);
    const old = this.entries.get(key);
    if (old) this.retire(key, old);
    const file = await LayerFile.open(layer, this.pathOf(layer), this.opts.durable ?? false, this.sharedState(layer));
    const entry: Entry = { key, file, refs: 0, users: 0, stale: false, closed: false, lastTouch: 0 };
    this.entries.set(key, entry);
    return entry;
  }

  private retire(key: string, entry: Entry): void {
    entry.stale = true;
    if (this.entries.get(key) === entry) this.entries.delete(key);
    if (entry.refs === 0) void closeEntry(entry);
  }

  /** Record use (LRU) and notice eviction by another process; throttled, in the background. */
  private maybeTouch(key: string, entry: Entry): void {
    const now = Date.now();
    if (now - entry.lastTouch < (this.opts.touchIntervalMs ?? 10_000)) return;
    entry.lastTouch = now;
    void (async () => {
      try {
        const st = await stat(entry.file.path);
        if (st.ino !== entry.file.ino) return this.retire(key, entry);
        await entry.file.touch();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.retire(key, entry);
        else this.log.debug({ err, layer: key }, 'cache touch failed');
      }
    })();
  }

  /**
   * Kept layer scans, weighed like layer files (one LRU over both: a scan's last use is set when an
   * index reuses it). Scans of another format version are never read again: returned apart.
   */
  private async listScans(): Promise<{ scans: GcItem[]; dead: string[] }> {
    const dir = path.join(this.dir, 'scans');
    const names = await readdir(dir).catch(() => [] as string[]);
    // Here, not at the top: scan-cache brings the whole layer scanner, which a server never needs.
    const { SCAN_FORMAT } = await import('./scan-cache.js');
    const scans: GcItem[] = [];
    const dead: string[] = [];
    const now = Date.now();
    for (const name of names) {
      const p = path.join(dir, name);
      const m = SCAN_NAME.exec(name);
      if (m && m[1] === SCAN_FORMAT) {
        const st = await stat(p).catch(() => undefined);
        if (st?.isFile()) scans.push({ kind: 'scan', name, path: p, bytes: st.blocks * 512, atimeMs: st.atimeMs });
      } else if (m) {
        dead.push(p);
      } else if (SCAN_TMP.test(name)) {
        const st = await stat(p).catch(() => undefined);
        if (st && now - st.mtimeMs > STALE_TMP_MS) dead.push(p);
      }
    }
    return { scans, dead };
  }

  /**
   * The windows files of published indexes (checkpoint-windows.ts), weighed like layer files. Their
   * windows are written as fetched and read in place, so the last use is the later of atime and mtime.
   */
  private async listWindowsFiles(): Promise<GcItem[]> {
    const dir = path.join(this.dir, 'windows');
    const names = await readdir(dir).catch(() => [] as string[]);
    const items: GcItem[] = [];
    for (const name of names) {
      if (!WINDOWS_NAME.test(name)) continue;
      const p = path.join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (st?.isFile()) items.push({ kind: 'windows', name, path: p, bytes: st.blocks * 512, atimeMs: Math.max(st.atimeMs, st.mtimeMs) });
    }
    return items;
  }

  private async runGc(target: number): Promise<GcResult> {
    const layers: GcItem[] = (await this.list()).map((l) => ({ ...l, kind: 'layer' }));
    const { scans, dead } = await this.listScans();
    let scansEvicted = 0;
    let windowsEvicted = 0;
    for (const p of dead) if (await unlink(p).then(() => true, () => false)) scansEvicted++;
    const items = [...layers, ...scans, ...(await this.listWindowsFiles())];
    let total = items.reduce((n, l) => n + l.bytes, 0);
    let evicted = 0;
    let freed = 0;
    const inUse = new Set<string>();
    for (const [key, e] of this.entries) if (e.refs > 0) inUse.add(key);
    // Oldest first, layers and scans alike; layers this process is reading go last.
    items.sort((a, b) => Number(inUse.has(a.name)) - Number(inUse.has(b.name)) || a.atimeMs - b.atimeMs);
    for (const l of items) {
      // A target of 0 empties the cache, layers that hold no blocks yet included.
      if (total <= target && target > 0) break;
      try {
        await unlink(l.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ path: l.path, err: (err as Error).message }, 'cannot evict cache file');
          continue;
        }
      }
      total -= l.bytes;
      freed += l.bytes;
      if (l.kind === 'scan') {
        scansEvicted++;
        this.log.info({ scan: l.name, bytes: l.bytes }, 'evicted layer scan from disk cache');
        continue;
      }
      if (l.kind === 'windows') {
        windowsEvicted++;
        this.log.info({ windows: l.name, bytes: l.bytes }, 'evicted checkpoint windows file from disk cache');
        continue;
      }
      await unlink(layerMetaPath(l.path)).catch(() => undefined);
      evicted++;
      this.opts.metrics?.evictions.inc();
      this.opts.metrics?.evictedBytes.inc(l.bytes);
      const entry = this.entries.get(l.name);
      if (entry) this.retire(l.name, entry);
      this.log.info({ layer: diffIdOf(l.name), bytes: l.bytes }, 'evicted layer from disk cache');
    }
    this.estimatedBytes = total;
    await this.removeLeftovers();
    return { evicted, scansEvicted, windowsEvicted, freedBytes: freed, remainingBytes: total };
  }

  /** Metadata whose layer file is gone, temporaries of writers that died, and files of the unbound format. */
  private async removeLeftovers(): Promise<void> {
    const names = await readdir(this.layersDir).catch(() => [] as string[]);
    const layers = new Set(names.filter((n) => LAYER_NAME.test(n)));
    const now = Date.now();
    for (const name of names) {
      if (UNBOUND_NAME.test(name)) {
        await unlink(path.join(this.layersDir, name)).catch(() => undefined);
        continue;
      }
      const m = SIDE_FILE.exec(name);
      if (!m) continue;
      const p = path.join(this.layersDir, name);
      if (name.endsWith('.tmp')) {
        const st = await stat(p).catch(() => undefined);
        if (st && now - st.mtimeMs > STALE_TMP_MS) await unlink(p).catch(() => undefined);
      } else if (!layers.has(m[1]!)) {
        await unlink(p).catch(() => undefined);
      }
    }
  }
}

/** "sha256:<hex>" of a layer file's name. */
function diffIdOf(name: string): string {
  return `sha256:${LAYER_NAME.exec(name)![1]}`;
}

/** Close an entry's file once, whoever gets there first (the last release, the last cache, eviction). */
function closeEntry(e: Entry): Promise<void> {
  if (e.closed) return Promise.resolve();
  e.closed = true;
  return e.file.close().catch(() => {});
}
