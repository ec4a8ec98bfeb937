import { BoundsWriter } from './block-bounds.js';
import type { Checkpoint } from './types.js';
import { packWindow } from './window-codec.js';
import type { BlockBoundary } from './gzip-inflater.js';
import { copyWindow, type PakoZStream } from './pako-inflate.js';
import { sparseWindow } from './sparse-window.js';

const WINDOW = 32 * 1024;
const EMPTY = Buffer.alloc(0);

/** Where a resume from this point fetches from (random-access.ts fetchStart). */
const startOf = (p: { in: number; bits: number }): number => (p.bits ? p.in - 1 : p.in);
/** Compressed bytes held for sparse windows at most; past it windows are kept whole. */
const MAX_HELD = 16 * 1024 * 1024;

/**
 * Decides where gzip checkpoints go: one every `span` bytes of output, and one at the last block
 * boundary at or before the data of every big file. The window of the most recent boundary is
 * kept (in one of two reused buffers) because a big file is only discovered after the inflater
 * has moved past that boundary. A checkpoint's window is made sparse (sparse-window.ts) once the
 * 32 KiB of output after it are known, so the compressed bytes from the last boundary on are kept.
 */
export class CheckpointPlanner {
  readonly checkpoints: Checkpoint[] = [];
  /** Every block boundary (where a fetch may stop), encoded. */
  readonly bounds = new BoundsWriter();
  private readonly span: number;
  private last: BlockBoundary | null = null;
  private lastWindow: Buffer = Buffer.alloc(0);
  private buffers = [Buffer.alloc(WINDOW), Buffer.alloc(WINDOW)];
  private which = 0;
  /** Checkpoints whose window waits for the output after them, oldest first. */
  private waiting: Checkpoint[] = [];
  /** Compressed bytes from `heldFrom` on, in the pieces given to input(). */
  private held: Buffer[] = [];
  private heldFrom = 0;
  private heldEnd = 0;

  /** `pack`: keep windows packed (Checkpoint.packed), as the index will store them. */
  constructor(span: number, private readonly pack = false) {
    this.span = span;
  }

  /** The compressed bytes at `at`, before the inflater is given them. */
  input(chunk: Uint8Array, at: number): void {
    if (this.held.length === 0) this.heldFrom = at;
    this.held.push(Buffer.from(chunk)); // a copy: a caller may reuse its buffer
    this.heldEnd = at + chunk.length;
    if (this.heldEnd - this.heldFrom > MAX_HELD) {
      // A huge block (or a crafted layer): keep whole windows rather than the bytes.
      for (const cp of this.waiting) this.settle(cp, false);
      this.waiting = [];
      this.held = [];
      this.heldFrom = this.heldEnd;
    }
  }

  /** `total` bytes of output so far: windows with 32 KiB of output after them are settled. */
  output(total: number): void {
    while (this.waiting.length && this.waiting[0]!.out + WINDOW <= total) this.settle(this.waiting.shift()!);
  }

  /** The input has ended: settle every window still waiting. */
  finish(): void {
    for (const cp of this.waiting) this.settle(cp);
    this.waiting = [];
    this.held = [];
  }

  /** Called by the inflater at every block boundary, after the output before it was consumed. */
  onBoundary(b: BlockBoundary, strm: PakoZStream): void {
    const prev = this.checkpoints[this.checkpoints.length - 1];
    this.bounds.add(b);
    if (b.memberStart) {
      this.last = b;
      this.lastWindow = Buffer.alloc(0);
      if (!prev || prev.out !== b.out) this.checkpoints.push({ out: b.out, in: b.in, bits: 0, window: Buffer.alloc(0) });
      return;
    }
    this.which ^= 1;
    this.lastWindow = copyWindow(strm, this.buffers[this.which]!);
    this.last = b;
    if (!prev || b.out - prev.out >= this.span) this.take();
    this.dropHeld();
  }

  /** A file's data starts at `dataOffset`: make sure a checkpoint sits at the last boundary before it. */
  before(dataOffset: number): void {
    const b = this.last;
    if (!b || b.out > dataOffset) return;
    this.take();
  }

  private take(): void {
    const b = this.last!;
    const prev = this.checkpoints[this.checkpoints.length - 1];
    if (prev && prev.out >= b.out) return;
    const cp: Checkpoint = { out: b.out, in: b.in, bits: b.bits, window: Buffer.from(this.lastWindow) };
    this.checkpoints.push(cp);
    if (cp.window.length > 0) this.waiting.push(cp);
  }

  /** Pack the checkpoint's window, sparse when the bytes after it are held (`sparse`). */
  private settle(cp: Checkpoint, sparse = true): void {
    const bytes = sparse ? this.heldBytes(startOf(cp)) : undefined;
    const window = bytes ? sparseWindow(cp.window, cp.bits, bytes) : cp.window;
    if (this.pack) {
      cp.packed = packWindow(window);
      cp.window = EMPTY;
    } else {
      cp.window = window;
    }
    this.dropHeld();
  }

  /** The held compressed bytes from `from` on (joined; a few blocks' worth), if all are held. */
  private heldBytes(from: number): Buffer | undefined {
    if (from < this.heldFrom || from >= this.heldEnd || this.held.length === 0) return undefined;
    const all = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held);
    this.held = [all];
    return all.subarray(from - this.heldFrom);
  }

  /** Forget compressed bytes before the last boundary and before every waiting checkpoint. */
  private dropHeld(): void {
    // Never past the last boundary: a checkpoint may still be taken there (before()), and the
    // inflater may not be past the current input piece yet.
    let keep = this.last ? startOf(this.last) : this.heldFrom;
    for (const cp of this.waiting) keep = Math.min(keep, startOf(cp));
    while (this.held.length && this.heldFrom + this.held[0]!.length <= keep) {
      this.heldFrom += this.held.shift()!.length;
    }
  }
}
