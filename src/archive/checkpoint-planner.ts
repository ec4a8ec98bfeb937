import { deflateRawSync } from 'node:zlib';
import type { Checkpoint } from './types.js';
import type { BlockBoundary } from './gzip-inflater.js';
import { copyWindow, type PakoZStream } from './pako-inflate.js';

const WINDOW = 32 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Decides where gzip checkpoints go: one every `span` bytes of output, and one at the last block
 * boundary at or before the data of every big file. The window of the most recent boundary is
 * kept (in one of two reused buffers) because a big file is only discovered after the inflater
 * has moved past that boundary.
 */
export class CheckpointPlanner {
  readonly checkpoints: Checkpoint[] = [];
  private readonly span: number;
  private last: BlockBoundary | null = null;
  private lastWindow: Buffer = Buffer.alloc(0);
  private buffers = [Buffer.alloc(WINDOW), Buffer.alloc(WINDOW)];
  private which = 0;

  /** `pack`: keep windows deflated (Checkpoint.packed), as the index will store them. */
  constructor(span: number, private readonly pack = false) {
    this.span = span;
  }

  /** Called by the inflater at every block boundary, after the output before it was consumed. */
  onBoundary(b: BlockBoundary, strm: PakoZStream): void {
    const prev = this.checkpoints[this.checkpoints.length - 1];
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
    const w = this.lastWindow;
    this.checkpoints.push(this.pack && w.length > 0
      ? { out: b.out, in: b.in, bits: b.bits, window: EMPTY, packed: { bytes: deflateRawSync(w, { level: 9 }), rawLength: w.length } }
      : { out: b.out, in: b.in, bits: b.bits, window: Buffer.from(w) });
  }
}
