import type { Readable } from 'node:stream';
import { ClipError } from '../util/errors.js';
import type { Checkpoint, LayerCompression } from './types.js';
import { inflateGzipNative } from './native-resume.js';

export type CompressedSource = Readable | AsyncIterable<Uint8Array>;

/** Where a layer's compressed bytes begin for a resume from `cp` (one byte early when unaligned). */
export function fetchStart(cp: Pick<Checkpoint, 'in' | 'bits'>): number {
  return cp.bits ? cp.in - 1 : cp.in;
}

/**
 * Decompress a layer from a checkpoint. `compressed` must begin at fetchStart(checkpoint); the
 * result is the uncompressed layer from checkpoint.out on, exactly as a full decompression gives
 * it (through later gzip members too). Stops when `compressed` ends; a partial input is not an
 * error, since callers fetch only what they need.
 */
export async function* inflateFrom(
  checkpoint: Checkpoint,
  compressed: CompressedSource,
  /** expectedBytes: how much output the caller's range inflates to, when known (sizes gzip's output buffers). */
  opts: { compression?: LayerCompression; name?: string; expectedBytes?: number } = {},
): AsyncGenerator<Buffer> {
  const compression = opts.compression ?? 'gzip';
  if (compression === 'gzip') {
    yield* inflateGzipNative(checkpoint, compressed as AsyncIterable<Uint8Array>, opts.name, opts.expectedBytes);
    return;
  }
  const pending: Buffer[] = [];
  const sink = (out: Uint8Array): void => {
    pending.push(Buffer.from(out.buffer, out.byteOffset, out.length));
  };
  let decoder: { write(c: Uint8Array, onData: (o: Uint8Array) => void): void } | null = null;
  // fzstd builds its decoding tables when loaded: only a zstd layer's read loads it.
  if (compression === 'zstd') decoder = new (await import('./zstd-decoder.js')).ZstdDecoder({ name: opts.name, startOut: checkpoint.out });
  else if (compression !== 'none') throw new ClipError('EUNSUPPORTED', `unknown layer compression "${String(compression)}"`, { object: opts.name });
  for await (const chunk of compressed as AsyncIterable<Uint8Array>) {
    if (!decoder) {
      yield Buffer.from(chunk);
      continue;
    }
    decoder.write(chunk, sink);
    while (pending.length) yield pending.shift()!;
  }
}

/** What random access needs to know about a layer. */
export interface RandomAccessLayer {
  compression: LayerCompression;
  compressedSize: number;
  uncompressedSize?: number;
  /** Ascending by out, the first at out = 0. */
  checkpoints: Checkpoint[];
  /** Names the layer in errors. */
  name?: string;
}

/** The last checkpoint at or before `offset`. */
export function checkpointAt(checkpoints: Checkpoint[], offset: number): { index: number; checkpoint: Checkpoint } {
  let lo = 0;
  let hi = checkpoints.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (checkpoints[mid]!.out <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { index: lo, checkpoint: checkpoints[lo]! };
}

/**
 * The compressed byte range [start, end) to fetch to read [offset, offset + length): from the
 * nearest checkpoint at or before offset to the `in` of the first checkpoint at or after the end
 * of the range (all blocks before a boundary end before its `in`), else to the end of the blob.
 */
export function compressedRangeFor(layer: RandomAccessLayer, offset: number, length: number): { checkpoint: Checkpoint; start: number; end: number } {
  if (layer.compression === 'none') return { checkpoint: { out: 0, in: 0, bits: 0, window: Buffer.alloc(0) }, start: offset, end: offset + length };
  if (layer.checkpoints.length === 0) throw new ClipError('EINVAL', 'layer has no checkpoints', { object: layer.name });
  const { index, checkpoint } = checkpointAt(layer.checkpoints, offset);
  let end = layer.compressedSize;
  for (let i = index + 1; i < layer.checkpoints.length; i++) {
    const next = layer.checkpoints[i]!;
    if (next.out >= offset + length) {
      end = next.in;
      break;
    }
  }
  return { checkpoint, start: fetchStart(checkpoint), end };
}

/**
 * Read `length` bytes at `offset` of the uncompressed layer, fetching only compressed bytes from
 * the nearest checkpoint on, and stopping as soon as the range is complete.
 * `fetchCompressed(start, end)` returns the blob's bytes [start, end) (end exclusive).
 */
export async function readUncompressedRange(
  layer: RandomAccessLayer,
  offset: number,
  length: number,
  fetchCompressed: (start: number, end: number) => Promise<CompressedSource>,
): Promise<Buffer> {
  if (offset < 0 || length < 0 || (layer.uncompressedSize !== undefined && offset + length > layer.uncompressedSize)) {
    throw new ClipError('EINVAL', `range ${offset}+${length} is outside the layer`, { object: layer.name });
  }
  const result = Buffer.alloc(length);
  if (length === 0) return result;
  const { checkpoint, start, end } = compressedRangeFor(layer, offset, length);
  const source = await fetchCompressed(start, end);
  let pos = layer.compression === 'none' ? offset : checkpoint.out;
  let filled = 0;
  for await (const out of inflateFrom(checkpoint, source, { compression: layer.compression, name: layer.name })) {
    const from = Math.max(offset, pos);
    const to = Math.min(offset + length, pos + out.length);
    if (to > from) {
      out.copy(result, from - offset, from - pos, to - pos);
      filled += to - from;
    }
    pos += out.length;
    if (filled === length) return result;
  }
  throw new ClipError('ECORRUPT', `compressed data ended before uncompressed offset ${offset + length} (got to ${pos})`, { object: layer.name });
}
