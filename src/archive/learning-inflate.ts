/**
 * Inflate a gzip layer from a checkpoint, as inflateFrom does, and on the way learn checkpoints at
 * given points (where reads begin and end). Node's native zlib cannot say where a deflate block
 * ends (no data_type, no bit count), so the stream is inflated with the block-aware pako
 * inflater only until the last target is settled, then handed to native zlib from the boundary
 * reached there (a checkpoint in its own right): the slower inflater runs only as far as it must.
 */
import { ClipError } from '../util/errors.js';
import type { BlockBoundary } from './gzip-inflater.js';
import { GzipInflater } from './gzip-inflater.js';
import { learnedOf, WINDOW_BYTES, type LearnedCheckpoint } from './learned-checkpoint.js';
import { inflateGzipNative } from './native-resume.js';
import { copyWindow, type PakoZStream } from './pako-inflate.js';
import { fetchStart } from './random-access.js';
import type { Checkpoint } from './types.js';

/**
 * A point to learn a checkpoint for. 'start': the last block boundary at or before `at` (where a
 * read from `at` can begin inflating). 'end': the first boundary at or after `at` (where a fetch
 * of the bytes before `at` can stop).
 */
export interface LearnTarget {
  at: number;
  kind: 'start' | 'end';
}

/** Bytes kept of the previous piece: pako's bit accumulator holds at most a few bytes. */
const KEEP_BEHIND = 64;

/** Thrown out of the pako inflater's boundary callback to stop it where native zlib takes over. */
class HandOver {
  constructor(readonly checkpoint: Checkpoint) {}
}

/**
 * The uncompressed layer from checkpoint.out on (`compressed` begins at fetchStart(checkpoint)),
 * calling `learn` once per target settled (targets after checkpoint.out, ascending by `at`; a
 * boundary already at checkpoint.out teaches nothing and is not reported). A target the input ends
 * before is settled with what was seen, or not at all.
 */
export async function* inflateLearning(
  checkpoint: Checkpoint,
  compressed: AsyncIterable<Uint8Array>,
  targets: readonly LearnTarget[],
  learn: (c: LearnedCheckpoint) => void,
  name?: string,
): AsyncGenerator<Buffer> {
  const todo = targets.filter((t) => t.at > checkpoint.out).sort((a, b) => a.at - b.at);
  const it = compressed[Symbol.asyncIterator]();
  if (!todo.length) {
    yield* inflateGzipNative(checkpoint, { [Symbol.asyncIterator]: () => it }, name);
    return;
  }
  let k = 0;
  /** The latest boundary at or before the pending start target, with its window. */
  let prev: LearnedCheckpoint | undefined;
  const scratch = Buffer.allocUnsafe(WINDOW_BYTES);
  const onBoundary = (b: BlockBoundary, strm: PakoZStream): void => {
    let here: LearnedCheckpoint | undefined;
    const at = (): LearnedCheckpoint => (here ??= learnedOf(b, b.memberStart ? Buffer.alloc(0) : Buffer.from(copyWindow(strm, scratch))));
    while (k < todo.length) {
      const t = todo[k]!;
      if (b.out < t.at) break;
      const c = t.kind === 'end' || b.out === t.at ? at() : prev;
      if (c && c.out > checkpoint.out) learn(c);
      k++;
    }
    if (k === todo.length) {
      const c = at();
      throw new HandOver({ out: c.out, in: b.in, bits: b.bits, window: c.window });
    }
    if (todo[k]!.kind === 'start') prev = at();
  };
  const pako = new GzipInflater({ resume: checkpoint, onBoundary, name });
  const out: Buffer[] = [];
  const sink = (v: Uint8Array): void => void out.push(Buffer.from(v.buffer, v.byteOffset, v.length));
  // The bytes fed so far that native zlib may need again: the current piece and the end of the one before.
  let base = fetchStart(checkpoint);
  let before: Buffer = Buffer.alloc(0);
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    const piece = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
    try {
      pako.write(piece, sink);
    } catch (err) {
      if (!(err instanceof HandOver)) throw err;
      yield* out.splice(0);
      const from = fetchStart(err.checkpoint);
      const held = Buffer.concat([before, piece]);
      const heldBase = base - before.length;
      if (from < heldBase) throw new ClipError('ECORRUPT', `block boundary at byte ${from} is before the bytes kept (${heldBase})`, { object: name });
      const rest = held.subarray(from - heldBase);
      async function* tail(): AsyncGenerator<Uint8Array> {
        if (rest.length) yield rest;
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          yield n.value;
        }
      }
      yield* inflateGzipNative(err.checkpoint, tail(), name);
      return;
    }
    yield* out.splice(0);
    // A boundary's first byte is at most a few bytes before what pako has consumed; copied, as
    // a source may reuse its buffer.
    before = Buffer.from(piece.subarray(Math.max(0, piece.length - KEEP_BEHIND)));
    base += piece.length;
  }
  // The input ended with a start target pending: the last boundary seen before it is still right.
  if (k < todo.length && todo[k]!.kind === 'start' && prev && prev.out > checkpoint.out) learn(prev);
}
