import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inflateAfter, sparseWindow } from '../../src/archive/sparse-window.js';

// A 32 KiB window and 64 KiB of data after it that copies one 1000-byte stretch of the window
// (from 2768 bytes back; a copy reaches at most 32 KiB back) and is otherwise random: only that
// stretch matters to whoever inflates the data.
const window = randomBytes(32 * 1024);
const copied = window.subarray(30_000, 31_000);
const data = Buffer.concat([randomBytes(1000), copied, randomBytes(63_000)]);
const stream = zlib.deflateRawSync(data, { dictionary: window, level: 9 });

describe('sparseWindow', () => {
  it('keeps the bytes the data copies and zeroes the rest, inflating to the same bytes', () => {
    const sparse = sparseWindow(window, 0, stream);
    expect(sparse).not.toBe(window);
    expect(sparse.length).toBe(window.length);
    expect(sparse.subarray(30_000, 31_000).equals(copied)).toBe(true);
    // random bytes rarely match 3 bytes of the window by chance: nearly all the rest is zero
    let kept = 0;
    for (let i = 0; i < sparse.length; i++) if (sparse[i] !== 0 && (i < 30_000 || i >= 31_000)) kept++;
    expect(kept).toBeLessThan(200);
    expect(zlib.inflateRawSync(stream, { dictionary: sparse }).equals(data)).toBe(true);
  });

  it('keeps the whole window when the output seen may not reach 32 KiB', () => {
    const short = stream.subarray(0, 5000);
    expect(inflateAfter(window, 0, short)).toMatchObject({ ended: false });
    expect(inflateAfter(window, 0, short).out.length).toBeLessThan(32 * 1024);
    expect(sparseWindow(window, 0, short)).toBe(window);
  });

  it('a stream that ends within 32 KiB (input left after it) is checked to its end', () => {
    const small = Buffer.concat([copied, randomBytes(3000)]);
    const own = Buffer.concat([zlib.deflateRawSync(small, { dictionary: window }), Buffer.alloc(8, 0xaa)]); // a trailer after it
    const after = inflateAfter(window, 0, own);
    expect(after.ended).toBe(true);
    expect(after.out.equals(small)).toBe(true);
    const sparse = sparseWindow(window, 0, own);
    expect(sparse).not.toBe(window);
    expect(zlib.inflateRawSync(own.subarray(0, own.length - 8), { dictionary: sparse }).equals(small)).toBe(true);
  });

  it('keeps the whole window when the data does not inflate', () => {
    const bad = Buffer.from(stream);
    bad.fill(0xff, 0, 64);
    expect(sparseWindow(window, 0, bad)).toBe(window);
  });

  it('a window nothing copies from becomes all zeros', () => {
    const plain = randomBytes(40_000);
    const own = zlib.deflateRawSync(plain, { level: 1 });
    const sparse = sparseWindow(window, 0, own);
    expect(sparse.every((b) => b === 0)).toBe(true);
    expect(zlib.inflateRawSync(own, { dictionary: sparse }).equals(plain)).toBe(true);
  });
});
