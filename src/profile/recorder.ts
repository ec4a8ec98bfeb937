/**
 * Records what a mount reads during its start, in order of first access: per read the layer, the
 * uncompressed range and the inode. A read that continues or repeats a range already recorded
 * grows it (or is dropped) rather than adding one, so a file read in many READs is one range.
 * Recording ends when reads go quiet (no new range for quietMs after the first read), at a bound
 * (time, ranges), or at stop().
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
  onEnd?: (ranges: ProfileRange[], why: 'quiet' | 'bound' | 'stopped') => void;
}

export class ProfileRecorder {
  private readonly ranges: ProfileRange[] = [];
  /** Per layer: the range ending at an offset, to grow by a read that starts there. */
  private readonly ends = new Map<number, Map<number, ProfileRange>>();
  private readonly starts = new Map<number, Map<number, ProfileRange>>();
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

  /** What was recorded so far (the ranges themselves: do not change them). */
  get recorded(): readonly ProfileRange[] {
    return this.ranges;
  }

  /** A read of bytes [offset, offset + length) of layer `layer` (its position in the index). */
  note(layer: number, offset: number, length: number, ino: number): void {
    if (this.ended || length <= 0) return;
    const now = performance.now();
    if (this.ranges.length === 0) {
      this.firstAt = now;
      this.maxTimer = setTimeout(() => this.end('bound'), this.maxMs);
      this.maxTimer.unref();
    }
    const ends = mapOf(this.ends, layer);
    const starts = mapOf(this.starts, layer);
    const end = offset + length;
    const same = starts.get(offset);
    if (same && same.offset + same.length >= end) return; // read again (a page the kernel dropped)
    const grown = ends.get(offset) ?? same;
    if (grown) {
      ends.delete(grown.offset + grown.length);
      grown.length = Math.max(grown.length, end - grown.offset);
      ends.set(grown.offset + grown.length, grown);
    } else {
      const r: ProfileRange = { layer, offset, length, atMs: Math.round(now - this.firstAt), ino };
      this.ranges.push(r);
      ends.set(end, r);
      starts.set(offset, r);
      if (this.ranges.length >= this.maxRanges) {
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

  /** End recording now (idempotent); returns what was recorded. */
  stop(): ProfileRange[] {
    this.end('stopped');
    return this.ranges;
  }

  /** End without reporting (a profile was found: this recording is not wanted). */
  discard(): void {
    this.ended = true;
    this.clearTimers();
  }

  private end(why: 'quiet' | 'bound' | 'stopped'): void {
    if (this.ended) return;
    this.ended = true;
    this.clearTimers();
    this.opts.onEnd?.(this.ranges, why);
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
