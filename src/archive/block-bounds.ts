/**
 * Deflate block boundaries of a gzip layer: where each block ends, in the uncompressed stream and
 * in the compressed blob (to the bit). A checkpoint is a boundary with a window; a bare boundary
 * has none, so inflating cannot start there, but a fetch can stop there: every block before it
 * ends before its `in`. With them a range request ends a block past the last byte it needs, not
 * at the next checkpoint (issue 12: 2.2 MB of python's unprofiled start).
 *
 * Stored compactly (the index's Bounds section, a scan's `bounds`): unsigned LEB128 varints, per
 * boundary the output delta and the bit-position delta from the one before (the first from 0),
 * where a boundary's bit position is in * 8 - bits (random-access.ts: `bits` of byte in - 1
 * belong to the next block). About 4 bytes a boundary; zlib writes one every 16-100 KB of output.
 */
import { ClipError } from '../util/errors.js';

export interface BlockBound {
  out: number;
  in: number;
  bits: number;
}

/** Decoded boundaries of one layer: parallel arrays, ascending by out (and by bit position). */
export interface BlockBounds {
  out: Float64Array;
  /** Bit position (in * 8 - bits). */
  bit: Float64Array;
}

export const NO_BOUNDS: BlockBounds = { out: new Float64Array(0), bit: new Float64Array(0) };

/** Collects boundaries as a scan meets them, dropping any that does not move forward. */
export class BoundsWriter {
  private readonly bytes: number[] = [];
  private lastOut = 0;
  private lastBit = 0;
  count = 0;

  add(b: BlockBound): void {
    const bit = b.in * 8 - b.bits;
    if (b.out <= this.lastOut || bit <= this.lastBit) return;
    varint(this.bytes, b.out - this.lastOut);
    varint(this.bytes, bit - this.lastBit);
    this.lastOut = b.out;
    this.lastBit = bit;
    this.count++;
  }

  finish(): Buffer {
    return Buffer.from(this.bytes);
  }
}

function varint(to: number[], n: number): void {
  while (n >= 0x80) {
    to.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  to.push(n);
}

/**
 * Decode one layer's boundaries; ECORRUPT naming `name` for bytes that are not a well-formed list
 * or that leave the layer (`outSize`, `inSize`).
 */
export function decodeBounds(buf: Uint8Array, outSize: number, inSize: number, name: string): BlockBounds {
  // Every boundary takes two varints of a byte or more: at most length / 2 of them. Filled in
  // place and cut to size, with the varints read inline: the index of a two-layer image has some
  // 20 000, decoded by a mount before it is ready, in code that runs once (closures and growing
  // arrays made it half the index's checks: bench/index/RESULTS.md, session 16).
  const outs = new Float64Array(buf.length >>> 1);
  const bits = new Float64Array(buf.length >>> 1);
  let count = 0;
  let out = 0;
  let bit = 0;
  const bad = (why: string): ClipError => new ClipError('ECORRUPT', `index file is corrupt: block boundaries ${why}`, { object: name });
  const maxBit = inSize * 8;
  for (let p = 0; p < buf.length; ) {
    // Two varints: the output delta, then the bit-position delta.
    let dOut = 0;
    let dBit = 0;
    for (let k = 0; k < 2; k++) {
      let n = 0;
      for (let scale = 1; ; scale *= 0x80) {
        if (scale > 2 ** 56) throw bad('hold a number too long');
        if (p >= buf.length) throw bad('end inside a number');
        const b = buf[p++]!;
        n += (b & 0x7f) * scale;
        if (b < 0x80) break;
      }
      if (k === 0) dOut = n;
      else dBit = n;
    }
    if (dOut === 0 || dBit === 0) throw bad('do not ascend');
    out += dOut;
    bit += dBit;
    if (out > outSize || bit > maxBit) throw bad('leave the layer');
    outs[count] = out;
    bits[count++] = bit;
  }
  return { out: outs.slice(0, count), bit: bits.slice(0, count) };
}

/** The first boundary at or after `out`, or undefined. */
export function boundAtOrAfter(b: BlockBounds, out: number): BlockBound | undefined {
  let lo = 0;
  let hi = b.out.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (b.out[mid]! < out) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= b.out.length) return undefined;
  const bit = b.bit[lo]!;
  const inOff = Math.ceil(bit / 8);
  return { out: b.out[lo]!, in: inOff, bits: inOff * 8 - bit };
}
