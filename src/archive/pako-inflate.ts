import { createRequire } from 'node:module';

/**
 * pako's low-level inflate (a line-by-line port of zlib's inflate.c). Its high-level API hides
 * what random access needs: stopping at deflate block boundaries (Z_BLOCK, data_type) and the
 * bit accumulator (hold/bits), which is how we resume at a non-byte-aligned boundary.
 */
export interface PakoInflateState {
  hold: number;
  bits: number;
  last: number | boolean;
  wsize: number;
  whave: number;
  wnext: number;
  window: Uint8Array | null;
}

export interface PakoZStream {
  input: Uint8Array | null;
  next_in: number;
  avail_in: number;
  total_in: number;
  output: Uint8Array | null;
  next_out: number;
  avail_out: number;
  total_out: number;
  msg: string;
  data_type: number;
  state: PakoInflateState;
}

interface PakoInflateModule {
  inflateInit2(strm: PakoZStream, windowBits: number): number;
  inflateReset(strm: PakoZStream): number;
  inflate(strm: PakoZStream, flush: number): number;
  inflateSetDictionary(strm: PakoZStream, dict: Uint8Array): number;
}

const require = createRequire(import.meta.url);
const inflateModule = require('pako/lib/zlib/inflate.js') as PakoInflateModule;
const ZStream = require('pako/lib/zlib/zstream.js') as new () => PakoZStream;

export const Z_OK = 0;
export const Z_STREAM_END = 1;
export const Z_BUF_ERROR = -5;
export const Z_NO_FLUSH = 0;
export const Z_BLOCK = 5;
/** data_type bits after inflate() returns. */
export const DT_LAST_BLOCK = 64;
export const DT_AT_BOUNDARY = 128;

/** A raw (headerless) inflate stream. */
export function createRawInflate(): PakoZStream {
  const strm = new ZStream();
  const ret = inflateModule.inflateInit2(strm, -15);
  if (ret !== Z_OK) throw new Error(`pako inflateInit2 failed (${ret})`);
  return strm;
}

export const pakoInflate = inflateModule;

/** The last up-to-32 KiB of output as pako's ring buffer holds it, copied into `into` (returns the used view). */
export function copyWindow(strm: PakoZStream, into: Buffer): Buffer {
  const s = strm.state;
  const win = s.window;
  if (!win || s.whave === 0) return into.subarray(0, 0);
  if (s.whave < s.wsize) {
    into.set(win.subarray(0, s.whave), 0);
    return into.subarray(0, s.whave);
  }
  const tail = win.subarray(s.wnext, s.wsize);
  into.set(tail, 0);
  into.set(win.subarray(0, s.wnext), tail.length);
  return into.subarray(0, s.wsize);
}
