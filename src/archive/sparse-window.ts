/**
 * Sparse checkpoint windows. A checkpoint keeps the 32 KiB before it because the deflate data after
 * it may copy from there, but only within the next 32 KiB of output (a distance is at most 32 KiB),
 * and most of the window is never copied. Bytes nothing copies are set to zero, so the window
 * compresses far better in the index; inflating from the checkpoint gives the same bytes.
 *
 * Which bytes are copied is found without a deflate parser of our own: the same compressed bytes
 * are inflated with made-up windows. A byte that differs between an all-0 and an all-1 window came
 * from the window; windows holding each position's low and high byte then say from where. The
 * result is checked: the sparse window must inflate the 32 KiB exactly as the real one does, or the
 * real window is kept. A wrong guess can only cost index bytes, never a wrong read.
 */
import { alignedHead } from './deflate-prefix.js';
import { WINDOW_BYTES } from './learned-checkpoint.js';
import { SyncRawInflate } from './sync-raw-inflate.js';

const Z_SYNC_FLUSH = 2;

/**
 * Up to WINDOW_BYTES of output from a checkpoint: `compressed` begins at its fetchStart (the byte
 * holding its first bit when `bits` > 0). `ended`: the deflate stream ended before WINDOW_BYTES
 * (input was left over: zlib stops taking input at the stream's end); a shorter output without it
 * means the input ran out.
 */
export function inflateAfter(window: Buffer, bits: number, compressed: Uint8Array): { out: Buffer; ended: boolean } {
  const z = new SyncRawInflate(window);
  const out = Buffer.allocUnsafe(WINDOW_BYTES);
  let produced = 0;
  try {
    const pieces: Uint8Array[] = bits && compressed.length
      ? [alignedHead(bits, compressed[0]!), compressed.subarray(1)]
      : [compressed];
    for (const piece of pieces) {
      for (let off = 0; off < piece.length && produced < out.length; ) {
        const r = z.step(Z_SYNC_FLUSH, piece, off, out, produced);
        off += r.consumed;
        produced += r.produced;
        if (r.consumed === 0 && r.produced === 0) return { out: out.subarray(0, produced), ended: true };
      }
    }
    return { out: out.subarray(0, produced), ended: false };
  } finally {
    z.close();
  }
}

function filled(length: number, fill: (i: number) => number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = fill(i);
  return b;
}

/**
 * The window with every byte the next 32 KiB of output does not copy set to zero, checked; the
 * window itself when `compressed` gives less than 32 KiB of output without the stream ending, or
 * when anything does not check.
 */
export function sparseWindow(window: Buffer, bits: number, compressed: Uint8Array): Buffer {
  if (window.length === 0) return window;
  try {
    const truth = inflateAfter(window, bits, compressed);
    if (truth.out.length === 0 || (truth.out.length < WINDOW_BYTES && !truth.ended)) return window;
    const n = window.length;
    const len = truth.out.length;
    const [zeros, ones, low, high] = [
      Buffer.alloc(n, 0), Buffer.alloc(n, 1), filled(n, (i) => i & 0xff), filled(n, (i) => i >> 8),
    ].map((w) => inflateAfter(w, bits, compressed).out);
    if (zeros!.length !== len || ones!.length !== len || low!.length !== len || high!.length !== len) return window;
    const sparse = Buffer.alloc(n);
    for (let j = 0; j < len; j++) {
      if (zeros![j] === ones![j]) continue; // a literal, or a copy of one
      const from = (high![j]! << 8) | low![j]!;
      if (from >= n) return window;
      sparse[from] = window[from]!;
    }
    return inflateAfter(sparse, bits, compressed).out.equals(truth.out) ? sparse : window;
  } catch {
    return window;
  }
}
