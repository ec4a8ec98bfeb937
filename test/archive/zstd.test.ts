import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readUncompressedRange } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import { ZstdFrameWalker } from '../../src/archive/zstd-frames.js';
import { isClipError } from '../../src/util/errors.js';
import { chunked, makeTar, run, tmpDir } from './fixtures.js';

let dir: string;
let tar: Buffer;
let single: Buffer;
let multi: Buffer;
let parts: Buffer[];
const skippable = Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18]), Buffer.from([5, 0, 0, 0]), Buffer.from('skip!')]);

beforeAll(() => {
  dir = tmpDir('clip-zstd-');
  tar = makeTar(dir);
  single = run('zstd', ['-q', '-c', '-3'], tar);
  // three frames (with and without checksums) and a skippable frame between them
  const cuts = [0, 700_000, 1_900_000, tar.length];
  parts = cuts.slice(1).map((end, i) => tar.subarray(cuts[i], end));
  multi = Buffer.concat([
    run('zstd', ['-q', '-c', '-1'], parts[0]!),
    skippable,
    run('zstd', ['-q', '-c', '--no-check', '-19'], parts[1]!),
    run('zstd', ['-q', '-c'], parts[2]!),
  ]);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('zstd layers', () => {
  it('a single-frame layer decodes fully and has one checkpoint at 0', async () => {
    const scan = await scanLayer(chunked(single, 50_000), { compression: 'zstd' });
    expect(scan.uncompressedSize).toBe(tar.length);
    expect(scan.checkpoints).toEqual([{ out: 0, in: 0, bits: 0, window: Buffer.alloc(0) }]);
    expect(scan.entries.length).toBeGreaterThan(100);
  });

  it('frame starts become checkpoints; skippable frames are stepped over', async () => {
    for (const size of [1, 3, 4096, 1 << 20]) {
      if (size === 1) {
        // byte by byte through the frame walker alone (the decoder is too slow for that)
        const w = new ZstdFrameWalker();
        const starts: number[] = [];
        for (let i = 0; i < multi.length; i++) for (const s of w.write(multi.subarray(i, i + 1))) if (s.frameStart) starts.push(s.at);
        w.end();
        expect(starts.length).toBe(3);
        continue;
      }
      const scan = await scanLayer(chunked(multi, size), { compression: 'zstd' });
      expect(scan.uncompressedSize).toBe(tar.length);
      expect(scan.checkpoints.map((c) => c.out)).toEqual([0, parts[0]!.length, parts[0]!.length + parts[1]!.length]);
      for (const cp of scan.checkpoints) expect(multi.readUInt32LE(cp.in)).toBe(0xfd2fb528);
    }
  });

  it('reads a range from the nearest frame without the frames before it', async () => {
    const scan = await scanLayer(chunked(multi, 65_536), { compression: 'zstd' });
    const offset = parts[0]!.length + parts[1]!.length + 1000;
    let fetchedFrom = -1;
    const got = await readUncompressedRange(scan, offset, 5000, async (start, end) => {
      fetchedFrom = start;
      return chunked(multi.subarray(start, end), 10_000);
    });
    expect(got.equals(tar.subarray(offset, offset + 5000))).toBe(true);
    expect(fetchedFrom).toBe(scan.checkpoints[2]!.in);
    // and across a frame boundary
    const across = parts[0]!.length - 100;
    const got2 = await readUncompressedRange(scan, across, 300, async (s, e) => chunked(multi.subarray(s, e), 10_000));
    expect(got2.equals(tar.subarray(across, across + 300))).toBe(true);
  });

  it('truncated or corrupt zstd is ECORRUPT naming the layer', async () => {
    for (const blob of [single.subarray(0, single.length - 10), Buffer.concat([multi, Buffer.from('garbage!')]), Buffer.from('not zstd at all')]) {
      const err = await scanLayer(chunked(blob, 65_536), { compression: 'zstd', name: 'sha256:z' }).catch((e: unknown) => e);
      expect(isClipError(err, 'ECORRUPT')).toBe(true);
      expect((err as Error).message).toMatch(/^sha256:z: /);
    }
  });
});
