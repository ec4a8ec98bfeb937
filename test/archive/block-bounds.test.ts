import fs from 'node:fs';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundAtOrAfter, BoundsWriter, decodeBounds } from '../../src/archive/block-bounds.js';
import { checkpointAt, fetchStart, inflateFrom } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import type { Checkpoint, LayerScan } from '../../src/archive/types.js';
import { chunked, makeTar, run, tmpDir } from './fixtures.js';

let dir: string;
let tar: Buffer;
const layers: { name: string; blob: Buffer; scan: LayerScan }[] = [];

beforeAll(async () => {
  dir = tmpDir('clip-bounds-');
  tar = makeTar(dir);
  const half = Math.floor(tar.length / 2);
  const blobs: [string, Buffer][] = [
    ['node zlib level 1', zlib.gzipSync(tar, { level: 1 })],
    ['GNU gzip -6', run('gzip', ['-6', '-c'], tar)],
    ['pigz', run('pigz', ['-c', '-p', '2'], tar)],
    ['multi-member', Buffer.concat([zlib.gzipSync(tar.subarray(0, half)), run('gzip', ['-c'], tar.subarray(half))])],
  ];
  for (const [name, blob] of blobs) {
    layers.push({ name, blob, scan: await scanLayer(chunked(blob, 65_536), { compression: 'gzip', span: 256 * 1024, name }) });
  }
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** What inflating blob[fetchStart(cp), stop) from `cp` gives, whole. */
async function inflateTo(cp: Checkpoint, blob: Buffer, stop: number): Promise<Buffer> {
  const got: Buffer[] = [];
  for await (const out of inflateFrom(cp, chunked(blob.subarray(fetchStart(cp), stop), 16_384))) got.push(Buffer.from(out));
  return Buffer.concat(got);
}

describe('deflate block boundaries', () => {
  it('encode and decode: ascending, deduplicated, found by offset', () => {
    const w = new BoundsWriter();
    w.add({ out: 100, in: 40, bits: 3 });
    w.add({ out: 100, in: 41, bits: 0 }); // no progress in output: dropped
    w.add({ out: 70_000, in: 20_000, bits: 0 });
    w.add({ out: 2 ** 40, in: 2 ** 38 + 5, bits: 7 });
    expect(w.count).toBe(3);
    const b = decodeBounds(w.finish(), 2 ** 41, 2 ** 39, 'layer');
    expect(Array.from(b.out)).toEqual([100, 70_000, 2 ** 40]);
    expect(boundAtOrAfter(b, 0)).toEqual({ out: 100, in: 40, bits: 3 });
    expect(boundAtOrAfter(b, 101)).toEqual({ out: 70_000, in: 20_000, bits: 0 });
    expect(boundAtOrAfter(b, 70_000)).toEqual({ out: 70_000, in: 20_000, bits: 0 });
    expect(boundAtOrAfter(b, 2 ** 40)).toEqual({ out: 2 ** 40, in: 2 ** 38 + 5, bits: 7 });
    expect(boundAtOrAfter(b, 2 ** 40 + 1)).toBeUndefined();
  });

  it('bytes that are not a list inside the layer are ECORRUPT naming the object', () => {
    const w = new BoundsWriter();
    w.add({ out: 5000, in: 900, bits: 1 });
    const good = w.finish();
    const cases: [Buffer, RegExp][] = [
      [good.subarray(0, good.length - 1), /end inside a number/],
      [Buffer.from([0, 5]), /do not ascend/],
      [Buffer.concat([good, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80])]), /too long|end inside/],
      [good, /leave the layer/],
    ];
    cases.forEach(([bytes, why], k) => {
      const size = k === 3 ? 4999 : 10_000;
      expect(() => decodeBounds(bytes, size, 10_000, 'sha256:abc')).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'sha256:abc', message: expect.stringMatching(why) }));
    });
  });

  it('a scan records every block boundary; a fetch that stops at one inflates exactly up to it', async () => {
    for (const { name, blob, scan } of layers) {
      const bounds = decodeBounds(scan.bounds!, scan.uncompressedSize, scan.compressedSize, name);
      // Every checkpoint sits on a boundary (those are where they may go), and there are more boundaries.
      for (const cp of scan.checkpoints.slice(1)) expect(boundAtOrAfter(bounds, cp.out)?.out, name).toBe(cp.out);
      expect(bounds.out.length, name).toBeGreaterThan(scan.checkpoints.length);
      for (let k = 0; k < bounds.out.length; k += Math.max(1, Math.floor(bounds.out.length / 12))) {
        const b = boundAtOrAfter(bounds, bounds.out[k]!)!;
        const { checkpoint: cp } = checkpointAt(scan.checkpoints, b.out - 1);
        const got = await inflateTo(cp, blob, b.in);
        expect(got.length, `${name}: boundary ${k}`).toBeGreaterThanOrEqual(b.out - cp.out);
        expect(got.subarray(0, b.out - cp.out).equals(tar.subarray(cp.out, b.out)), `${name}: boundary ${k}`).toBe(true);
        // And inflating can go on from it, with the 32 KiB before it as the window.
        if (b.out >= tar.length) continue;
        const from: Checkpoint = { ...b, window: tar.subarray(Math.max(0, b.out - 32_768), b.out) };
        const next = await inflateTo(from, blob, Math.min(blob.length, b.in + 20_000));
        expect(next.length, `${name}: after boundary ${k}`).toBeGreaterThan(0);
        expect(next.equals(tar.subarray(b.out, b.out + next.length)), `${name}: after boundary ${k}`).toBe(true);
      }
    }
  });
});
