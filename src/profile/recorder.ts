/**
 * Records what a mount reads during its start, in order of first access: per read the layer, the
 * uncompressed range and the inode. A read that continues or repeats a recent range grows it (or is
 * dropped) rather than adding one, so a file read in many READs is one range.
 * Recording ends when reads go quiet (no new range for quietMs after the first read), at a bound
 * (time, ranges), or at stop().
 *
 * Memory: a node's server records the start of every mount it serves, and a mount read hard from
 * its start records until a bound (20 000 ranges or 120 s): 20 mounts under random readers held
 * ~150k ranges as objects in maps, +35 MB of heap (bench/server/RESULTS.md). So the ranges are
 * kept in columns of numbers (40 bytes each), only the last MERGE_WINDOW ranges can still grow,
 * a recording that ended hands its ranges over and keeps nothing, and all the recordings of a
 * process together hold at most PROCESS_MAX_RANGES (one that would go past it ends with 'budget',
 * and is not kept as a profile: it is cut short by other mounts' reads, not a whole start): many
 * mounts read hard at once are not starts worth a profile of 20 000 ranges each.
 */
import type { ProfileRange } from './format.js';

export interface RecorderOptions {
  /** End after this long without a new range (0: only at stop() or a bound). Default 2000. */
  quietMs?: number;
  /** End this long after the first read at the latest. Default 120 s. */
  maxMs?: number;
  /** End at this many ranges. Default 20 000. */
  maxRanges?: number;
  /** Called once, when recording ends (by any cause), with what was recorded. */
  onEnd?: (ranges: ProfileRange[], why: EndReason) => void;
}

/** Why a recording ended: reads went quiet, its own bound, stop(), or the process's budget of ranges. */
export type EndReason = 'quiet' | 'bound' | 'stopped' | 'budget';

/** Ranges a read may still continue or repeat: reads of one file come close together. */
export const MERGE_WINDOW = 1024;
/** Ranges all the recordings of the process may hold at once (2.5 MiB of columns). */
export const PROCESS_MAX_RANGES = 65_536;
/** Ranges the live recordings of the process hold now. */
let processRanges = 0;

/** Numbers per range in the columns: layer, offset, length, atMs, ino. */
const FIELDS = 5;
/** Ranges per block of columns (a block is 40 KiB). */
const BLOCK = 1024;

export class ProfileRecorder {
  /** The ranges, FIELDS numbers each, in blocks of BLOCK ranges. */
  private blocks: Float64Array[] = [];
  private count = 0;
  /** Per layer: the recent range (its number) ending at an offset, to grow by a read that starts there. */
  private ends = new Map<number, Map<number, number>>();
  private starts = new Map<number, Map<number, number>>();
  private firstAt = 0;
  private ended = false;
  private quietTimer: NodeJS.Timeout | undefined;
  private maxTimer: NodeJS.Timeout | undefined;
  private readonly quietMs: number;
  private readonly maxMs: number;
  private readonly maxRanges: number;

  constructor(private readonly opts: RecorderOptions = {}) {
    this.quietMs = opts.quietMs ?? 2000;
    this.maxMs = opts.maxMs ?? 120_000;
    this.maxRanges = opts.maxRanges ?? 20_000;
  }

  /** True until recording ends. */
  get active(): boolean {
    return !this.ended;
  }

  /** What was recorded so far (a copy); nothing once the recording ended and handed it over. */
  get recorded(): ProfileRange[] {
    const out: ProfileRange[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.range(i));
    return out;
  }

  /** A read of bytes [offset, offset + length) of layer `layer` (its position in the index). */
  note(layer: number, offset: number, length: number, ino: number): void {
    if (this.ended || length <= 0) return;
    const now = performance.now();
    if (this.count === 0) {
      this.firstAt = now;
      this.maxTimer = setTimeout(() => this.end('bound'), this.maxMs);
      this.maxTimer.unref();
    }
    const ends = mapOf(this.ends, layer);
    const starts = mapOf(this.starts, layer);
    const end = offset + length;
    const same = starts.get(offset);
    if (same !== undefined && this.field(same, 1) + this.field(same, 2) >= end) return; // read again (a page the kernel dropped)
    const grown = ends.get(offset) ?? same;
    if (grown !== undefined) {
      const from = this.field(grown, 1);
      const oldEnd = from + this.field(grown, 2);
      ends.delete(oldEnd);
      const newEnd = Math.max(oldEnd, end);
      this.set(grown, 2, newEnd - from);
      ends.set(newEnd, grown);
    } else {
      if (processRanges >= PROCESS_MAX_RANGES) {
        this.end('budget');
        return;
      }
      processRanges++;
      const n = this.count++;
      if (n % BLOCK === 0) this.blocks.push(new Float64Array(BLOCK * FIELDS));
      this.set(n, 0, layer);
      this.set(n, 1, offset);
      this.set(n, 2, length);
      this.set(n, 3, Math.round(now - this.firstAt));
      this.set(n, 4, ino);
      ends.set(end, n);
      starts.set(offset, n);
      if (n >= MERGE_WINDOW) this.forget(n - MERGE_WINDOW);
      if (this.count >= this.maxRanges) {
        this.end('bound');
        return;
      }
    }
    if (this.quietMs > 0) {
      clearTimeout(this.quietTimer);
      this.quietTimer = setTimeout(() => this.end('quiet'), this.quietMs);
      this.quietTimer.unref();
    }
  }

  /** End recording now (idempotent); returns what was recorded (nothing if it had ended before). */
  stop(): ProfileRange[] {
    return this.end('stopped');
  }

  /** End without reporting (a profile was found: this recording is not wanted). */
  discard(): void {
    this.ended = true;
    this.clearTimers();
    this.release();
  }

  private end(why: EndReason): ProfileRange[] {
    if (this.ended) return [];
    this.ended = true;
    this.clearTimers();
    const ranges = this.recorded;
    this.release();
    this.opts.onEnd?.(ranges, why);
    return ranges;
  }

  /** Range `n` can no longer grow: out of the lookups (if they still point at it). */
  private forget(n: number): void {
    const layer = this.field(n, 0);
    const offset = this.field(n, 1);
    const ends = this.ends.get(layer)!;
    const starts = this.starts.get(layer)!;
    const end = offset + this.field(n, 2);
    if (ends.get(end) === n) ends.delete(end);
    if (starts.get(offset) === n) starts.delete(offset);
  }

  private release(): void {
    processRanges -= this.count;
    this.blocks = [];
    this.count = 0;
    this.ends = new Map();
    this.starts = new Map();
  }

  private field(n: number, f: number): number {
    return this.blocks[Math.floor(n / BLOCK)]![(n % BLOCK) * FIELDS + f]!;
  }

  private set(n: number, f: number, v: number): void {
    this.blocks[Math.floor(n / BLOCK)]![(n % BLOCK) * FIELDS + f] = v;
  }

  private range(n: number): ProfileRange {
    return { layer: this.field(n, 0), offset: this.field(n, 1), length: this.field(n, 2), atMs: this.field(n, 3), ino: this.field(n, 4) };
  }

  private clearTimers(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
  }
}

function mapOf<V>(m: Map<number, Map<number, V>>, k: number): Map<number, V> {
  let v = m.get(k);
  if (!v) m.set(k, (v = new Map()));
  return v;
}
