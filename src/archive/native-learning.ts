/**
 * inflateLearning at native speed: node's zlib stops at deflate block boundaries when asked
 * (Z_BLOCK) but does not say at which bit of the last byte it consumed the next block begins
 * (zlib's data_type is not exposed). So a boundary is known to a byte: the next block starts at one
 * of 8 bit positions of that byte. Those chosen for a target are settled by resuming pako from
 * each candidate over a few KiB and keeping the one that gives the bytes native zlib gave.
 * Inflation runs on this thread (the zlib handle's synchronous write) only until every target is
 * settled and one more boundary is settled to the bit; from there the rest goes to the thread
 * pool (inflateGzipNative), as a resume without learning does.
 */
import zlib from 'node:zlib';
import { ClipError } from '../util/errors.js';
import { alignedHead } from './deflate-prefix.js';
import { GzipInflater } from './gzip-inflater.js';
import { inflateGzipNative } from './native-resume.js';
import { WINDOW_BYTES, type LearnedCheckpoint } from './learned-checkpoint.js';
import { SyncRawInflate } from './sync-raw-inflate.js';
import type { LearnTarget } from './learning-inflate.js';
import { fetchStart } from './random-access.js';
import type { Checkpoint } from './types.js';

/** Output bytes compared to settle a boundary's bit, and compressed bytes given for them. */
const CHECK_OUT = 4096;
const CHECK_IN = 4096;
const OUT_BUFFER = 256 * 1024;

/** A boundary known to a byte: the next block begins in the last `0..7` bits of byte `c - 1`, or at `c`. */
interface Boundary {
  out: number;
  c: number;
  window: Buffer;
}

/** A boundary chosen for a target, waiting for the bytes that settle its bit. */
interface Pending {
  b: Boundary;
  /** Native output from b.out on, up to CHECK_OUT. */
  truth: Buffer[];
  truthBytes: number;
}

export function isNativeLearningAvailable(): boolean {
  try {
    new SyncRawInflate(Buffer.alloc(0)).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * As inflateLearning: the uncompressed layer from checkpoint.out on (`compressed` begins at
 * fetchStart(checkpoint)), calling `learn` for the boundary each target asks for, settled to the
 * bit. A boundary native zlib did not stop at (one at the very end of an input piece) is not seen:
 * a target may then get the boundary before (start) or after (end) it, which is still right.
 */
export async function* inflateLearningNative(
  checkpoint: Checkpoint,
  compressed: AsyncIterable<Uint8Array>,
  targets: readonly LearnTarget[],
  learn: (c: LearnedCheckpoint) => void,
  name?: string,
): AsyncGenerator<Buffer> {
  const todo = targets.filter((t) => t.at > checkpoint.out).sort((a, b) => a.at - b.at);
  const z = new SyncRawInflate(checkpoint.window);
  let k = 0;
  /** The latest boundary while a start target waits, with the output since it. */
  let prev: Pending | undefined;
  let seen: Boundary | undefined; // a stop that becomes a boundary once inflation goes on past it
  const pending: Pending[] = [];
  // Output since the last boundary, enough for a window (views of buffers never written again).
  let recent: Buffer[] = [checkpoint.window];
  let recentBytes = checkpoint.window.length;
  // Compressed bytes kept for settling: from `keptBase` on.
  const kept: Buffer[] = [];
  let keptBase = fetchStart(checkpoint);
  let keptBytes = 0;
  let out = checkpoint.out;
  let outBuf = Buffer.allocUnsafe(OUT_BUFFER);
  let outPos = 0;
  let rest: GzipInflater | undefined; // after the member ended
  // Once every target is settled, the next boundary settled to the bit is where inflation goes
  // back to the thread pool (inflateGzipNative): this thread inflates only as far as learning needs.
  let handover: Pending | undefined;
  let noHandover = false;
  let first = true;

  const windowNow = (): Buffer => {
    const all = Buffer.concat(recent);
    return Buffer.from(all.subarray(Math.max(0, all.length - WINDOW_BYTES)));
  };
  const compressedAt = (from: number, to: number, all: Buffer = Buffer.concat(kept)): Buffer =>
    all.subarray(Math.max(0, from - keptBase), Math.max(0, Math.min(all.length, to - keptBase)));
  /** Settle a boundary's bit; learn it when exactly the right bytes come out of one candidate. */
  /** The exact checkpoint of a boundary known to a byte, if one of its 8 candidates gives the bytes native zlib gave. */
  const settleBits = (p: Pending): Checkpoint | undefined => {
    const truth = Buffer.concat(p.truth).subarray(0, CHECK_OUT);
    if (truth.length < 64) return undefined;
    const all = Buffer.concat(kept); // once for the 8 candidates, not a copy of what is kept for each
    for (let bits = 0; bits < 8; bits++) {
      const cp: Checkpoint = { out: p.b.out, in: p.b.c, bits, window: p.b.window };
      const input = compressedAt(fetchStart(cp), p.b.c + CHECK_IN, all);
      const got: Buffer[] = [];
      let n = 0;
      try {
        new GzipInflater({ resume: cp, name }).write(input, (v) => {
          if (n < truth.length) got.push(Buffer.from(v.subarray(0, truth.length - n)));
          n += v.length;
        });
      } catch {
        continue;
      }
      const g = Buffer.concat(got);
      if (g.length >= Math.min(truth.length, 64) && truth.subarray(0, g.length).equals(g)) return cp;
    }
    return undefined;
  };
  const settle = (p: Pending): void => {
    const cp = settleBits(p);
    if (cp) learn({ out: cp.out, inBits: cp.in * 8 - cp.bits, window: cp.window });
  };
  const onBoundary = (b: Boundary): void => {
    const here: Pending = { b, truth: [], truthBytes: 0 };
    while (k < todo.length) {
      const t = todo[k]!;
      if (b.out < t.at) break;
      const c = t.kind === 'end' || b.out === t.at ? here : prev;
      if (c && c.b.out > checkpoint.out && !pending.includes(c)) pending.push(c);
      k++;
    }
    prev = k < todo.length && todo[k]!.kind === 'start' ? here : undefined;
  };
  const produced = (view: Buffer): void => {
    recent.push(view);
    recentBytes += view.length;
    while (recent.length > 1 && recentBytes - recent[0]!.length >= WINDOW_BYTES) recentBytes -= recent.shift()!.length;
    for (const p of [...pending, ...(prev && !pending.includes(prev) ? [prev] : []), ...(handover ? [handover] : [])]) {
      if (p.truthBytes >= CHECK_OUT) continue;
      const from = Math.max(0, p.b.out - (out - view.length));
      p.truth.push(view.subarray(from));
      p.truthBytes += view.length - from;
    }
  };
  const settleReady = (inEnd: number, done: boolean): void => {
    for (let i = 0; i < pending.length; ) {
      const p = pending[i]!;
      if (done || (p.truthBytes >= CHECK_OUT && inEnd >= p.b.c + CHECK_IN)) {
        settle(p);
        pending.splice(i, 1);
      } else i++;
    }
    // Compressed bytes no boundary still needs are let go.
    const need = Math.min(...pending.map((p) => p.b.c - 1), prev ? prev.b.c - 1 : Infinity, seen ? seen.c - 1 : Infinity, handover ? handover.b.c - 1 : Infinity, inEnd - 64);
    while (kept.length > 1 && keptBase + kept[0]!.length <= need) {
      keptBase += kept[0]!.length;
      keptBytes -= kept.shift()!.length;
    }
  };

  try {
    const it = compressed[Symbol.asyncIterator]();
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      const chunk = next.value;
      if (!chunk.length) continue;
      let piece = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      if (rest) {
        const outs: Buffer[] = [];
        rest.write(piece, (v) => void outs.push(Buffer.from(v)));
        yield* outs;
        continue;
      }
      // Blob offset of piece[0] (the head of an unaligned start is not from the blob).
      let base = keptBase + keptBytes;
      kept.push(Buffer.from(piece)); // copied: a source may reuse its buffer
      keptBytes += piece.length;
      if (first) {
        first = false;
        if (checkpoint.bits) {
          const head = alignedHead(checkpoint.bits, piece[0]!);
          base -= head.length - 1;
          piece = Buffer.concat([head, piece.subarray(1)]);
        }
      }
      const outs: Buffer[] = [];
      for (let off = 0; off < piece.length; ) {
        const learning = k < todo.length || pending.length > 0 || (!handover && !noHandover);
        const flush = learning ? zlib.constants.Z_BLOCK : zlib.constants.Z_NO_FLUSH;
        const r = z.step(flush, piece, off, outBuf, outPos);
        if (r.consumed === 0 && r.produced === 0) {
          // The member ended: its trailer and what follows go to the gzip-aware inflater.
          seen = undefined;
          rest = new GzipInflater({ resumeAtTrailer: { in: base + off, out }, name });
          rest.write(piece.subarray(off), (v) => void outs.push(Buffer.from(v)));
          break;
        }
        if (seen) {
          // Inflation went on past the stop: it was a block boundary, not the member's end.
          if (k < todo.length || pending.length > 0) onBoundary(seen);
          else if (!handover && !noHandover) handover = { b: seen, truth: [], truthBytes: 0 };
          seen = undefined;
        }
        let outFull = false;
        if (r.produced) {
          const view = outBuf.subarray(outPos, outPos + r.produced);
          outPos += r.produced;
          out += r.produced;
          outs.push(view);
          produced(view);
          if (outPos === outBuf.length) {
            outFull = true;
            outBuf = Buffer.allocUnsafe(OUT_BUFFER);
            outPos = 0;
          }
        }
        off += r.consumed;
        if (handover && handover.truthBytes >= CHECK_OUT && keptBase + keptBytes >= handover.b.c + CHECK_IN) {
          const cp = settleBits(handover);
          if (cp) {
            yield* outs;
            // The bytes inflated past the boundary here are given already: the rest's first ones are skipped.
            const skip = out - cp.out;
            const from = compressedAt(fetchStart(cp), keptBase + keptBytes);
            async function* tail(): AsyncGenerator<Uint8Array> {
              yield from;
              for (;;) {
                const n = await it.next();
                if (n.done) return;
                yield n.value;
              }
            }
            yield* skipFirst(inflateGzipNative(cp, tail(), name), skip);
            return;
          }
          noHandover = true;
          handover = undefined;
        }
        // Input left and room for output: native zlib stopped at a block boundary (or the member's end).
        if (learning && off < piece.length && !outFull) {
          seen = { out, c: base + off, window: windowNow() };
          recent = [seen.window];
          recentBytes = seen.window.length;
        }
      }
      settleReady(keptBase + keptBytes, false);
      yield* outs;
    }
    settleReady(keptBase + keptBytes, true);
    // The input ended with a start target pending: the last boundary seen before it is still right.
    if (k < todo.length && todo[k]!.kind === 'start' && prev && prev.b.out > checkpoint.out) {
      pending.push(prev);
      settleReady(Infinity, true);
    }
  } catch (err) {
    if (err instanceof ClipError) throw err;
    throw new ClipError('ECORRUPT', `invalid deflate data (${(err as Error).message})`, { object: name, cause: err });
  } finally {
    z.close();
  }
}

/** `stream` without its first `n` bytes. */
async function* skipFirst(stream: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const piece of stream) {
    if (left >= piece.length) {
      left -= piece.length;
      continue;
    }
    yield left ? piece.subarray(left) : piece;
    left = 0;
  }
}
