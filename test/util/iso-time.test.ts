import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoTime } from '../../src/util/iso-time.js';

const MAX = 8.64e15; // Date's range, either side of 1970

describe('isoTime', () => {
  it('writes what Date#toISOString writes, over the whole range of a Date', () => {
    fc.assert(fc.property(fc.integer({ min: -MAX, max: MAX }), (ms) => {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }), { numRuns: 20_000 });
    for (const ms of [0, -1, 1, MAX, -MAX, 951_782_400_000 /* 2000-02-29 */, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_001, 1.5, -0.5]) {
      expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('takes the time now by default', () => {
    const before = Date.now();
    const at = Date.parse(isoTime());
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
  });

  it('refuses what is not a time, naming it', () => {
    for (const bad of [NaN, Infinity, MAX + 1]) expect(() => isoTime(bad)).toThrow(String(bad));
  });
});
