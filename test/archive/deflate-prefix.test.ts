import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { alignedHead } from '../../src/archive/deflate-prefix.js';

/** `d` moved `s` bits up, as if a block began at bit s of byte 0; the low s bits of byte 0 are `junk`. */
function shiftUp(d: Buffer, s: number, junk: number): Buffer {
  const out = Buffer.alloc(d.length + 1);
  let carry = junk & ((1 << s) - 1);
  for (let i = 0; i < d.length; i++) {
    out[i] = ((d[i]! << s) | carry) & 0xff;
    carry = d[i]! >> (8 - s);
  }
  out[d.length] = carry;
  return out;
}

describe('alignedHead', () => {
  const text = Buffer.from(Array.from({ length: 4000 }, (_, i) => `line ${i} ${i % 7 ? 'alpha' : 'omega'}\n`).join(''));
  const dictionary = Buffer.from('line 0 omega\nline 1 alpha\n'.repeat(100));

  it('lets native inflate start at every bit of a byte, with and without a dictionary', () => {
    for (let s = 1; s <= 7; s++) {
      for (const junk of [0x00, 0xff, randomBytes(1)[0]!]) {
        for (const dict of [undefined, dictionary]) {
          const raw = zlib.deflateRawSync(text, dict ? { dictionary: dict } : {});
          const blob = shiftUp(raw, s, junk);
          const head = alignedHead(8 - s, blob[0]!);
          const got = zlib.inflateRawSync(Buffer.concat([head, blob.subarray(1)]), dict ? { dictionary: dict } : {});
          expect(got.equals(text), `s=${s} junk=${junk} dict=${dict !== undefined}`).toBe(true);
        }
      }
    }
  });

  it('keeps the blob bits of the first byte and replaces only the ones before the block', () => {
    for (let bits = 1; bits <= 7; bits++) {
      const head = alignedHead(bits, 0xff);
      const last = head[head.length - 1]!;
      expect(last >> (8 - bits)).toBe((1 << bits) - 1);
    }
  });

  it('refuses an aligned or impossible bit count', () => {
    expect(() => alignedHead(0, 0)).toThrow(RangeError);
    expect(() => alignedHead(8, 0)).toThrow(RangeError);
  });
});
