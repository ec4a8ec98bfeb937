import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { unpackWindow } from '../../src/archive/learned-checkpoint.js';
import { decodeProfile, encodeProfile, type StartupProfile } from '../../src/profile/format.js';
import { isClipError } from '../../src/util/errors.js';

const D = (c: string): string => `sha256:${c.repeat(64)}`;

function sample(): StartupProfile {
  return {
    manifestDigest: D('a'), indexDigest: D('b'), layers: [D('c'), D('d')],
    ranges: [
      { layer: 1, offset: 5 * 2 ** 32 + 17, length: 131072, atMs: 0, ino: 42 },
      { layer: 0, offset: 0, length: 1, atMs: 1234, ino: 7 },
    ],
    learned: new Map([[1, [{ out: 2 ** 33, inBits: 2 ** 36 + 3, window: randomBytes(32 * 1024) }, { out: 100, inBits: 80, window: Buffer.alloc(100, 1) }]]]),
  };
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('did not throw');
}

describe('profile format', () => {
  it('round-trips ranges (offsets past 4 GiB) and learned checkpoints with their windows', async () => {
    const p = sample();
    const back = decodeProfile(encodeProfile(p), 'p');
    expect(back.manifestDigest).toBe(p.manifestDigest);
    expect(back.indexDigest).toBe(p.indexDigest);
    expect(back.layers).toEqual(p.layers);
    expect(back.ranges).toEqual(p.ranges);
    expect([...back.learned.keys()]).toEqual([1]);
    const [a, b] = back.learned.get(1)!;
    expect(a!.out).toBe(2 ** 33);
    expect(a!.inBits).toBe(2 ** 36 + 3);
    expect((await unpackWindow(a!.packed!, a!.out, 'p')).equals(p.learned.get(1)![0]!.window)).toBe(true);
    expect((await unpackWindow(b!.packed!, b!.out, 'p')).equals(Buffer.alloc(100, 1))).toBe(true);
  });

  it('keeps learned windows deflated when decoding, and writes them back as they came', () => {
    const bytes = encodeProfile(sample());
    const back = decodeProfile(bytes, 'p');
    for (const c of back.learned.get(1)!) {
      expect(c.window.length).toBe(0);
      expect(c.packed!.length).toBeGreaterThan(0);
    }
    // Encoded again without inflating and deflating anything: the same bytes.
    expect(encodeProfile(back).equals(bytes)).toBe(true);
  });

  it('a window that does not inflate, or is longer than the bytes before it, fails with ECORRUPT naming the layer when unpacked', async () => {
    await expect(unpackWindow(Buffer.from('not deflate data at all'), 100_000, 'sha256:layer')).rejects.toMatchObject({ code: 'ECORRUPT', object: 'sha256:layer' });
    const window = deflateRawSync(Buffer.alloc(500, 7));
    await expect(unpackWindow(window, 499, 'sha256:layer')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/500 bytes/) });
    expect((await unpackWindow(window, 500, 'sha256:layer')).equals(Buffer.alloc(500, 7))).toBe(true);
  });

  it('is compact: a thousand ranges in a few kB', () => {
    const ranges = Array.from({ length: 1000 }, (_, i) => ({ layer: i % 2, offset: i * 300_000, length: 4096 + i, atMs: i * 3, ino: 1000 + i }));
    const bytes = encodeProfile({ ...sample(), ranges, learned: new Map() });
    expect(bytes.length).toBeLessThan(16 * 1024);
  });

  it('rejects truncated, damaged, foreign and future-version profiles with ECORRUPT naming the profile', () => {
    const good = encodeProfile(sample());
    const cases: Buffer[] = [
      good.subarray(0, good.length - 1),
      good.subarray(0, 20),
      Buffer.from('not a profile at all, just some text in a file'),
      Buffer.alloc(0),
    ];
    const flipped = Buffer.from(good);
    flipped[40]! ^= 0x10;
    cases.push(flipped);
    for (const bad of cases) {
      const err = errorOf(() => decodeProfile(bad, '/cache/profiles/x.profile'));
      expect(isClipError(err) && err.code).toBe('ECORRUPT');
      expect(String((err as Error).message)).toMatch(/profile/);
      expect(isClipError(err) && err.object).toBe('/cache/profiles/x.profile');
    }
  });

  it('refuses to encode a range of a layer it does not list, or an oversized window', () => {
    expect(() => encodeProfile({ ...sample(), ranges: [{ layer: 2, offset: 0, length: 1, atMs: 0, ino: 0 }] })).toThrow(/layer 2/);
    expect(() => encodeProfile({ ...sample(), learned: new Map([[0, [{ out: 0, inBits: 0, window: Buffer.alloc(40_000) }]]]) })).toThrow(/window/);
  });
});
