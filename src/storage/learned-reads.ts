/**
 * Which chunks of each layer this store's reads asked for (a bit per chunk), and from that which
 * learned checkpoints another node needs to repeat those reads: for each run of adjacent chunks
 * read, the learned checkpoint at or before its start (where to begin inflating) and the one at or
 * after its end (where to stop fetching). The registry tier learns on both sides of every chunk
 * boundary it inflates through; most of those lie inside chunks brought along and never read.
 */
import type { LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import { chunkCount, type LayerRecord } from './types.js';

export class ReadChunks {
  private readonly byLayer = new Map<string, Uint8Array>();

  note(layer: LayerRecord, first: number, last: number): void {
    let bits = this.byLayer.get(layer.digest);
    if (!bits) this.byLayer.set(layer.digest, (bits = new Uint8Array(Math.ceil(chunkCount(layer) / 8))));
    for (let i = first; i <= last; i++) bits[i >> 3]! |= 1 << (i & 7);
  }

  /** The chunks read, as [first, last] runs. */
  runs(layer: LayerRecord): [number, number][] {
    const bits = this.byLayer.get(layer.digest);
    if (!bits) return [];
    const out: [number, number][] = [];
    for (let i = 0; i < bits.length * 8; i++) {
      if (!(bits[i >> 3]! & (1 << (i & 7)))) continue;
      const r = out[out.length - 1];
      if (r && r[1] + 1 === i) r[1] = i;
      else out.push([i, i]);
    }
    return out;
  }
}

/** Of `learned` (ascending by out), those that start and end the runs of chunks read. */
export function learnedForReads(learned: readonly LearnedCheckpoint[], read: readonly [number, number][], layer: LayerRecord): LearnedCheckpoint[] {
  const picked = new Set<LearnedCheckpoint>();
  const cs = layer.chunkSize;
  for (const [first, last] of read) {
    const start = first * cs;
    const end = (last + 1) * cs;
    const before = findLast(learned, (c) => c.out <= start);
    if (before) picked.add(before);
    if (end < layer.uncompressedSize) {
      const after = learned.find((c) => c.out >= end);
      if (after) picked.add(after);
    }
  }
  return learned.filter((c) => picked.has(c));
}

function findLast<T>(xs: readonly T[], f: (x: T) => boolean): T | undefined {
  for (let i = xs.length - 1; i >= 0; i--) if (f(xs[i]!)) return xs[i];
  return undefined;
}
