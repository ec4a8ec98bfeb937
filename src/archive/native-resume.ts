import zlib from 'node:zlib';
import { ClipError } from '../util/errors.js';
import type { Checkpoint } from './types.js';
import { alignedHead } from './deflate-prefix.js';
import { GzipInflater } from './gzip-inflater.js';

/** Output buffer of the native inflater: each refill is a trip to the libuv pool, so few and large. */
const NATIVE_CHUNK = 512 * 1024;
/** The smallest output buffer asked for when the output's size is known (zlib's default). */
const MIN_NATIVE_CHUNK = 16 * 1024;

/**
 * The output buffer for `expected` bytes of output: just large enough (and a page more, so that
 * zlib does not start another buffer the moment this one is full), up to NATIVE_CHUNK; past it,
 * the size that the output fills evenly. A small
 * range inflated into a 512 KiB buffer left its bytes a small part of it, which a keeper copies
 * rather than keep the rest alive (bench/index/RESULTS.md, session 14).
 */
export function outputChunkFor(expected: number | undefined): number {
  if (expected === undefined || !(expected > 0)) return NATIVE_CHUNK;
  // Past NATIVE_CHUNK, buffers of one size that the output fills evenly (no small last one).
  const buffers = Math.ceil((expected + 4096) / NATIVE_CHUNK);
  return Math.min(NATIVE_CHUNK, Math.max(MIN_NATIVE_CHUNK, Math.ceil(expected / buffers / 4096) * 4096 + 4096));
}
/** Compressed bytes per native write: from the first to the largest. */
const FIRST_BATCH = 32 * 1024;
const MAX_BATCH = 256 * 1024;
/** Aim for about this much output per native write (see toNative). */
const OUTPUT_PER_WRITE = 2 * 1024 * 1024;
const MIN_WRITE = 1024;
/** Room past a batch's target for the piece that completes it (a socket read is at most 64 KiB). */
const PIECE_SLACK = 64 * 1024;

/**
 * Resume a gzip layer at `checkpoint` with node's native zlib (about 2x pako's
 * speed where inflating dominates; bench/archive/RESULTS.md). `compressed`
 * begins at fetchStart(checkpoint). Native inflate runs to the end of the member the checkpoint is
 * in; from its trailer on (later members, padding) the pako-based GzipInflater takes over, with the
 * same checks as a pako resume. A partial input is not an error.
 *
 * Every buffer it yields is never written again (node's zlib fills a fresh output buffer once one
 * is full, and the tail's are copies): a consumer may keep views of them instead of copies.
 */
export async function* inflateGzipNative(
  checkpoint: Checkpoint,
  compressed: AsyncIterable<Uint8Array>,
  name?: string,
  /** The output the caller expects (the bytes up to where its range stops), when it knows it. */
  expectedBytes?: number,
): AsyncGenerator<Buffer> {
  const start = checkpoint.bits ? checkpoint.in - 1 : checkpoint.in;
  const native = new NativeMember(checkpoint, name, outputChunkFor(expectedBytes));
  // Set once the member ends (inside toNative, hence the explicit type for narrowing).
  let rest = null as GzipInflater | null;
  const pending: Buffer[] = [];
  // Copied: pako may write its output buffer again (only the member's tail goes this way).
  const sink = (out: Uint8Array): void => {
    pending.push(Buffer.from(out));
  };
  // Each write is a trip to the libuv pool: small pieces are joined, the first ones less so that
  // the first output comes early.
  const batch = new InputBatch();
  let target = FIRST_BATCH;
  const toNative = async function* (piece: Buffer): AsyncGenerator<Buffer> {
    for (let pos = 0; pos < piece.length; ) {
      // Bound the output of one write: a run of zeros inflates 1000:1, and a consumer that
      // needs only a little must not wait for (or pay for) hundreds of MB it will drop.
      const ratio = native.blobBytesConsumed > 0 ? native.produced / native.blobBytesConsumed : 4;
      const size = Math.max(MIN_WRITE, Math.min(piece.length - pos, Math.floor(OUTPUT_PER_WRITE / ratio)));
      const slice = piece.subarray(pos, pos + size);
      pos += slice.length;
      const leftover = await native.write(slice);
      yield* native.take();
      if (leftover) {
        // The member ended inside this slice: its trailer starts right after the consumed bytes.
        rest = new GzipInflater({ resumeAtTrailer: { in: start + native.blobBytesConsumed, out: checkpoint.out + native.produced }, name });
        const after = Buffer.concat([leftover, piece.subarray(pos)]);
        if (after.length) rest.write(after, sink);
        while (pending.length) yield pending.shift()!;
        return;
      }
    }
  };
  try {
    for await (const input of compressed) {
      if (!input.length) continue;
      if (rest) {
        rest.write(input, sink);
        while (pending.length) yield pending.shift()!;
        continue;
      }
      const view = Buffer.from(input.buffer, input.byteOffset, input.length);
      // A piece that fills a batch alone goes as it is; smaller ones are joined.
      if (batch.length === 0 && view.length >= target) {
        target = Math.min(target * 2, MAX_BATCH);
        yield* toNative(view);
        continue;
      }
      batch.add(view, target);
      if (batch.length < target) continue;
      target = Math.min(target * 2, MAX_BATCH);
      yield* toNative(batch.take());
    }
    if (!rest && batch.length) yield* toNative(batch.take());
    if (!rest) {
      await native.end();
      yield* native.take();
    }
  } finally {
    native.destroy();
  }
}

/**
 * Compressed pieces joined for one native write, each byte copied once, as it comes (it is kept
 * across the next pull, and a source may reuse its buffer). Joining the copies again at the end
 * copied most of the compressed bytes twice (bench/index/RESULTS.md, session 14).
 */
class InputBatch {
  private buf: Buffer | undefined;
  length = 0;

  /** Add a copy of `piece`; the buffer is sized for a batch of `target` bytes and one more piece. */
  add(piece: Buffer, target: number): void {
    if (!this.buf || this.length + piece.length > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(target + PIECE_SLACK, this.length + piece.length));
      if (this.buf) this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    piece.copy(this.buf, this.length);
    this.length += piece.length;
  }

  /** The joined bytes; the batch starts again empty (the bytes are the caller's). */
  take(): Buffer {
    const out = this.buf!.subarray(0, this.length);
    this.buf = undefined;
    this.length = 0;
    return out;
  }
}

/** One native raw inflate from a checkpoint to the end of its member. */
class NativeMember {
  private readonly inflater: zlib.InflateRaw;
  private readonly checkpoint: Checkpoint;
  private readonly name: string | undefined;
  private readonly out: Buffer[] = [];
  private error: Error | null = null;
  private ended = false;
  /** Called on 'end' and on 'error'. */
  private readonly waiters = new Set<() => void>();
  /** Bytes given to the inflater that are not from the blob (the empty blocks before an unaligned start). */
  private headExtra = 0;
  private fed = 0;
  private first = true;
  /** Uncompressed bytes produced so far. */
  produced = 0;

  constructor(checkpoint: Checkpoint, name?: string, chunkSize = NATIVE_CHUNK) {
    this.checkpoint = checkpoint;
    this.name = name;
    this.inflater = zlib.createInflateRaw({
      ...(checkpoint.window.length ? { dictionary: checkpoint.window } : {}),
      // A range read stops anywhere: a truncated member is not an error.
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      chunkSize,
    });
    this.inflater.on('data', (b: Buffer) => {
      this.out.push(b);
      this.produced += b.length;
    });
    this.inflater.on('error', (err: Error) => {
      this.error = err;
      this.wake();
    });
    this.inflater.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  /** Blob bytes the inflater consumed (up to the end of the member once it ended). */
  get blobBytesConsumed(): number {
    return this.inflater.bytesWritten - this.headExtra;
  }

  /**
   * Inflate one piece. Returns null while the member goes on, or once it ended the bytes of this
   * piece after its last deflate byte (the output is then complete).
   */
  async write(input: Uint8Array): Promise<Buffer | null> {
    let piece = Buffer.from(input.buffer, input.byteOffset, input.length);
    if (this.first) {
      this.first = false;
      if (this.checkpoint.bits) {
        const head = alignedHead(this.checkpoint.bits, piece[0]!);
        this.headExtra = head.length - 1;
        piece = Buffer.concat([head, piece.subarray(1)]);
      }
    }
    this.fed += piece.length;
    await this.wait((done) => this.inflater.write(piece, (err) => done(err ?? null)));
    const unconsumed = this.fed - this.inflater.bytesWritten;
    if (unconsumed === 0) return null;
    // Native zlib stopped early: the member ended. Let all its output arrive first.
    await this.wait((done) => this.onEnd(() => done(null)));
    return piece.subarray(piece.length - unconsumed);
  }

  async end(): Promise<void> {
    await this.wait((done) => {
      this.onEnd(() => done(null));
      this.inflater.end();
    });
  }

  /** Output produced so far, in order. */
  *take(): Generator<Buffer> {
    while (this.out.length) yield this.out.shift()!;
  }

  destroy(): void {
    this.inflater.destroy();
  }

  private wait(start: (done: (err: Error | null) => void) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const onError = (): void => {
        if (this.error) done(this.error);
      };
      const done = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        this.waiters.delete(onError);
        const failure = err ?? this.error;
        if (failure) reject(this.corrupt(failure));
        else resolve();
      };
      if (this.error) return done(this.error);
      this.waiters.add(onError);
      start(done);
    });
  }

  /** Run `fn` once the output is complete (at once if it is). */
  private onEnd(fn: () => void): void {
    if (this.ended) fn();
    else {
      const once = (): void => {
        if (!this.ended && !this.error) return;
        this.waiters.delete(once);
        fn();
      };
      this.waiters.add(once);
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private corrupt(err: Error): ClipError {
    const at = this.checkpoint.bits ? this.checkpoint.in - 1 : this.checkpoint.in;
    return new ClipError('ECORRUPT', `invalid deflate data near byte ${at + this.blobBytesConsumed} (${err.message})`, {
      object: this.name,
      cause: err,
    });
  }
}
