/**
 * Learned checkpoints of each layer, as the registry tier keeps them: those it captured while
 * inflating (where reads began and ended) and those another node handed over. Sorted by `out`,
 * one per offset; bounded in number (each holds a 32 KiB window), so a long-running mount that
 * reads a whole layer stops learning rather than growing. Once the reads they were handed over
 * for are done, their windows can be kept deflated (`pack`, ~1/2 to 1/3 of the bytes): a later
 * fetch that starts at one inflates its window again (`loadWindow`, ~0.1 ms against a fetch).
 * Those handed over deflated (a startup profile's) stay so until a fetch first starts at one:
 * inflated then, off the event loop, and kept inflated until `pack`.
 */
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import { checkLearned, checkpointOf, unpackWindow, type LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import { NO_WINDOW, type Checkpoint } from '../archive/types.js';
import type { LayerRecord } from './types.js';

interface Entry {
  /** Its window is empty once packed. */
  learned: LearnedCheckpoint;
  checkpoint: Checkpoint;
  /** The window, deflated. */
  packed?: Buffer;
  /** The packed window being inflated, or inflated, for the fetches that start here until pack(). */
  unpacking?: Promise<Buffer>;
  /** Bytes of that inflated window, once inflated. */
  unpacked?: number;
}

/** Where a fetch may start inflating: with its window, or with the means to inflate it. */
export interface LearnedStart {
  checkpoint: Checkpoint;
  loadWindow?: () => Promise<Checkpoint>;
}

const deflateRawAsync = promisify(deflateRaw);

export class LearnedCheckpoints {
  /** Per blob digest, ascending by out. */
  private readonly byLayer = new Map<string, Entry[]>();
  private count = 0;

  constructor(private readonly max = 512) {}

  /** Add one (captured here or handed over); false when it is there already or the bound is reached. */
  add(layer: LayerRecord, l: LearnedCheckpoint): boolean {
    if (this.count >= this.max) return false;
    let list = this.byLayer.get(layer.digest);
    if (!list) this.byLayer.set(layer.digest, (list = []));
    const k = firstAtOrAfter(list, l.out);
    if (list[k]?.learned.out === l.out) return false;
    // One handed over packed (a profile's) is inflated when a fetch first starts there.
    const entry: Entry = l.packed
      ? { learned: { out: l.out, inBits: l.inBits, window: NO_WINDOW }, checkpoint: checkpointOf({ ...l, window: NO_WINDOW }), packed: l.packed }
      : { learned: l, checkpoint: checkpointOf(l) };
    list.splice(k, 0, entry);
    this.count++;
    return true;
  }

  /** Add a list from elsewhere, each checked against the layer first (EINVAL naming the layer). */
  addAll(layer: LayerRecord, list: readonly LearnedCheckpoint[]): number {
    const sizes = { name: layer.digest, compressedSize: layer.compressedSize, uncompressedSize: layer.uncompressedSize };
    for (const l of list) checkLearned(l, sizes);
    let added = 0;
    for (const l of list) {
      const own = l.packed ? { out: l.out, inBits: l.inBits, window: NO_WINDOW, packed: Buffer.from(l.packed) } : { out: l.out, inBits: l.inBits, window: Buffer.from(l.window) };
      if (this.add(layer, own)) added++;
    }
    return added;
  }

  get full(): boolean {
    return this.count >= this.max;
  }

  /** The layer's, by out; those kept deflated as they are (`packed`: what a profile carries). */
  list(layer: LayerRecord): LearnedCheckpoint[] {
    return (this.byLayer.get(layer.digest) ?? []).map((e) => (e.packed ? { ...e.learned, packed: e.packed } : e.learned));
  }

  /** Bytes of windows kept for the layer (deflated ones as kept). */
  windowBytes(layer: LayerRecord): number {
    let n = 0;
    for (const e of this.byLayer.get(layer.digest) ?? []) n += e.packed ? e.packed.length + (e.unpacking ? e.unpacked ?? 0 : 0) : e.learned.window.length;
    return n;
  }

  /**
   * Keep every window deflated from now on, deflated off the event loop (48 windows took ~0.1 s
   * of CPU). Returns the bytes saved.
   */
  async pack(): Promise<number> {
    let saved = 0;
    for (const e of [...this.byLayer.values()].flat()) {
      // Handed over packed: only the inflated copy goes.
      if (e.unpacking) {
        saved += e.unpacked ?? 0;
        e.unpacking = undefined;
        e.unpacked = undefined;
      }
      const window = e.learned.window;
      if (e.packed || !window.length) continue;
      const packed = await deflateRawAsync(window, { level: 1 });
      if (e.packed || packed.length >= window.length) continue;
      e.packed = packed;
      e.learned = { ...e.learned, window: NO_WINDOW };
      e.checkpoint = { ...e.checkpoint, window: NO_WINDOW };
      saved += window.length - packed.length;
    }
    return saved;
  }

  has(layer: LayerRecord): boolean {
    return (this.byLayer.get(layer.digest)?.length ?? 0) > 0;
  }

  /** The last one at or before `offset`, where a fetch would start. */
  atOrBefore(layer: LayerRecord, offset: number): LearnedStart | undefined {
    const list = this.byLayer.get(layer.digest);
    const e = list?.[firstAtOrAfter(list, offset + 1) - 1];
    if (!e) return undefined;
    const { checkpoint, packed } = e;
    if (!packed) return { checkpoint };
    const loadWindow = async (): Promise<Checkpoint> => {
      // Several fetches of a prefetch may start here at once: inflated once.
      // (One that fails fails the fetch, which drops the checkpoint: it is not planned over again.)
      const unpacking = (e.unpacking ??= unpackWindow(packed, checkpoint.out, layer.digest).then((w) => {
        e.unpacked = w.length;
        return w;
      }));
      return { ...checkpoint, window: await unpacking };
    };
    return { checkpoint, loadWindow };
  }

  /** The first one at or after `offset` (where a fetch may end: its window is not needed). */
  atOrAfter(layer: LayerRecord, offset: number): Checkpoint | undefined {
    const list = this.byLayer.get(layer.digest);
    return list?.[firstAtOrAfter(list, offset)]?.checkpoint;
  }

  /** Drop them all. */
  clear(): void {
    this.byLayer.clear();
    this.count = 0;
  }

  /** Drop those with out in [from, to] (a fetch that used them gave bytes that failed); returns how many. */
  drop(layer: LayerRecord, from: number, to: number): number {
    const list = this.byLayer.get(layer.digest);
    if (!list) return 0;
    const a = firstAtOrAfter(list, from);
    const b = firstAtOrAfter(list, to + 1);
    if (b <= a) return 0;
    list.splice(a, b - a);
    this.count -= b - a;
    if (!list.length) this.byLayer.delete(layer.digest);
    return b - a;
  }
}

function firstAtOrAfter(list: Entry[], out: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.learned.out < out) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
