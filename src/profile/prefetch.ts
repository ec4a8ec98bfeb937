/**
 * Fetching a profile's ranges ahead of the program: in the order it first read them, widened to
 * whole chunks (the unit the read path fetches and verifies), joined per layer when close, split
 * when long, and read through the same storage path as demand reads, a few at a time. Demand reads
 * never queue behind it: they go to storage directly and at most join a chunk already on its way.
 */
import type { LayerRecord } from '../storage/types.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import type { ProfileRange } from './format.js';

export interface PrefetchPiece {
  layer: LayerRecord;
  /** Position of the layer in the index. */
  layerAt: number;
  offset: number;
  length: number;
}

export interface PlanOptions {
  /** Join two pieces of a layer when at most this many chunks lie between them. Default 0. */
  gapChunks?: number;
  /** Split pieces longer than this. Default 8 MiB. */
  maxPieceBytes?: number;
}

/** Ranges as chunk-aligned pieces in first-access order; ranges outside their layer are dropped. */
export function planPrefetch(ranges: readonly ProfileRange[], layers: readonly LayerRecord[], opts: PlanOptions = {}): PrefetchPiece[] {
  const gap = opts.gapChunks ?? 0;
  const max = opts.maxPieceBytes ?? 8 * 1024 * 1024;
  // Per layer, the pieces in chunk units [first, last], each in `order` at its earliest range.
  const order: { layerAt: number; first: number; last: number; dead: boolean }[] = [];
  const byLayer = new Map<number, typeof order>();
  for (const r of ranges) {
    const layer = layers[r.layer];
    if (!layer || r.offset >= layer.uncompressedSize) continue;
    const cs = layer.chunkSize;
    let first = Math.floor(r.offset / cs);
    let last = Math.floor((Math.min(r.offset + r.length, layer.uncompressedSize) - 1) / cs);
    const list = byLayer.get(r.layer) ?? [];
    byLayer.set(r.layer, list);
    // Absorb every piece this one touches (or nearly), keeping the earliest's place in the order.
    let keep: (typeof order)[number] | undefined;
    for (const p of list) {
      if (p.dead || p.last + gap + 1 < first || last + gap + 1 < p.first) continue;
      first = Math.min(first, p.first);
      last = Math.max(last, p.last);
      if (!keep) keep = p;
      else p.dead = true;
    }
    if (keep) {
      keep.first = first;
      keep.last = last;
    } else {
      const p = { layerAt: r.layer, first, last, dead: false };
      list.push(p);
      order.push(p);
    }
  }
  const out: PrefetchPiece[] = [];
  for (const p of order) {
    if (p.dead) continue;
    const layer = layers[p.layerAt]!;
    const cs = layer.chunkSize;
    const step = Math.max(1, Math.floor(max / cs)) * cs;
    const end = Math.min((p.last + 1) * cs, layer.uncompressedSize);
    for (let o = p.first * cs; o < end; o += step) out.push({ layer, layerAt: p.layerAt, offset: o, length: Math.min(step, end - o) });
  }
  return out;
}

export interface PrefetchReader {
  read(layer: LayerRecord, offset: number, length: number, opts?: { signal?: AbortSignal }): Promise<Buffer>;
  /** The range made ready without being copied out (Storage.warm); read() is used without it. */
  warm?(layer: LayerRecord, offset: number, length: number, opts?: { signal?: AbortSignal }): Promise<number>;
}

export interface PrefetchOptions {
  /** Pieces in flight at once (2–4). Default 3. */
  concurrency?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface PrefetchResult {
  pieces: number;
  bytes: number;
  failed: number;
  ms: number;
}

/** Read every piece (in order, `concurrency` at a time); failures are logged, never thrown. */
export async function prefetch(storage: PrefetchReader, pieces: readonly PrefetchPiece[], opts: PrefetchOptions = {}): Promise<PrefetchResult> {
  const log = opts.logger ?? silentLogger;
  const t0 = performance.now();
  let next = 0;
  let bytes = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < pieces.length && !opts.signal?.aborted) {
      const p = pieces[next++]!;
      try {
        const o = opts.signal ? { signal: opts.signal } : {};
        const got = storage.warm ? await storage.warm(p.layer, p.offset, p.length, o) : (await storage.read(p.layer, p.offset, p.length, o)).length;
        bytes += got;
      } catch (err) {
        if (opts.signal?.aborted) return;
        failed++;
        log.warn({ layer: p.layer.diffId, offset: p.offset, length: p.length, err: (err as Error).message }, 'profile: prefetch of a range failed (demand reads fetch it)');
      }
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? 3, pieces.length));
  await Promise.all(Array.from({ length: n }, worker));
  return { pieces: pieces.length, bytes, failed, ms: performance.now() - t0 };
}
