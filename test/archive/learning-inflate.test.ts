import fs from 'node:fs';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GzipInflater } from '../../src/archive/gzip-inflater.js';
import { checkpointOf, type LearnedCheckpoint } from '../../src/archive/learned-checkpoint.js';
import { inflateLearning, type LearnTarget } from '../../src/archive/learning-inflate.js';
import { inflateLearningNative } from '../../src/archive/native-learning.js';
import { fetchStart, inflateFrom } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import type { LayerScan } from '../../src/archive/types.js';
import { chunked, makeTar, run, tmpDir } from './fixtures.js';

const SPAN = 512 * 1024;
let dir: string;
let tar: Buffer;
/** Every block boundary's uncompressed offset, per layer, from a full inflate. */
const boundaries = new Map<string, number[]>();
const layers: { name: string; blob: Buffer; scan: LayerScan }[] = [];

beforeAll(async () => {
  dir = tmpDir('clip-learn-');
  tar = makeTar(dir);
  const half = Math.floor(tar.length / 2);
  const blobs: [string, Buffer][] = [
    ['node zlib level 6', zlib.gzipSync(tar)],
    ['GNU gzip -9', run('gzip', ['-9', '-c'], tar)],
    ['GNU gzip -1, two members', Buffer.concat([run('gzip', ['-1', '-c'], tar.subarray(0, half)), run('gzip', ['-c'], tar.subarray(half))])],
  ];
  for (const [name, blob] of blobs) {
    const bounds: number[] = [];
    const g = new GzipInflater({
      reuseOutput: true,
      onBoundary: (b) => {
        if (b.memberStart && b.out > 0) secondMember.set(name, b.out);
        bounds.push(b.out);
      },
    });
    for (let o = 0; o < blob.length; o += 65_536) g.write(blob.subarray(o, o + 65_536), () => {});
    boundaries.set(name, bounds);
  }
  for (const [name, blob] of blobs) layers.push({ name, blob, scan: await scanLayer(chunked(blob, 65_536), { compression: 'gzip', span: SPAN, name }) });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of gen) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

/** Where each layer's second gzip member begins (uncompressed), if it has one. */
const secondMember = new Map<string, number>();

describe.each([
  // The native one learns within the member it starts in (real layers are one member).
  ['inflateLearning (pako)', inflateLearning, false],
  ['inflateLearningNative', inflateLearningNative, true],
])('%s', (_, inflateLearning, oneMember) => {
  it('yields what a plain resume yields, and learns checkpoints that resume to the right bytes', async () => {
    for (const { name, blob, scan } of layers) {
      // From every index checkpoint but the last, targets inside its span and past it.
      for (const cp of scan.checkpoints.slice(0, -1)) {
        const targets: LearnTarget[] = [
          { at: cp.out + 100_000, kind: 'start' },
          { at: cp.out + 300_000, kind: 'end' },
          { at: cp.out + 700_000, kind: 'start' },
          { at: cp.out + 900_000, kind: 'end' },
        ].filter((t) => t.at < tar.length) as LearnTarget[];
        const member = secondMember.get(name) ?? Infinity;
        if (oneMember && cp.out < member) {
          // Targets up to the last boundary before the member's end.
          const last = boundaries.get(name)!.filter((b) => b < member).at(-1)!;
          targets.splice(0, targets.length, ...targets.filter((t) => t.at <= last));
        }
        const learned: LearnedCheckpoint[] = [];
        const out = await collect(inflateLearning(cp, chunked(blob.subarray(fetchStart(cp)), 16_384), targets, (c) => learned.push(c), name));
        expect(out.equals(tar.subarray(cp.out)), `${name} from ${cp.out}`).toBe(true);
        // Exactly the boundary each target asks for (none when it is the resume point itself, or
        // when no boundary follows an end).
        const bounds = boundaries.get(name)!;
        const want = targets.map((t) => (t.kind === 'start' ? bounds.filter((b) => b <= t.at).at(-1) : bounds.find((b) => b >= t.at)))
          .filter((b): b is number => b !== undefined && b > cp.out);
        expect(learned.map((c) => c.out), `${name} from ${cp.out}`).toEqual(want);
        for (const c of learned) {
          const k = checkpointOf(c);
          const got = await collect(inflateFrom(k, chunked(blob.subarray(fetchStart(k), Math.min(blob.length, fetchStart(k) + 40_000)), 7_000)));
          expect(got.length).toBeGreaterThan(0);
          expect(got.equals(tar.subarray(c.out, c.out + got.length)), `${name}: learned at ${c.out}`).toBe(true);
        }
      }
    }
  });

  it('learns unaligned boundaries with full windows and member starts with none', async () => {
    const all: LearnedCheckpoint[] = [];
    for (const { blob, scan } of layers.slice(0, 2)) {
      const cp = scan.checkpoints[0]!;
      const targets: LearnTarget[] = [];
      for (let at = 50_000; at < tar.length; at += 150_000) targets.push({ at, kind: at % 300_000 ? 'start' : 'end' });
      await collect(inflateLearning(cp, chunked(blob.subarray(fetchStart(cp)), 65_536), targets, (c) => all.push(c)));
    }
    expect(all.some((c) => c.inBits % 8 !== 0)).toBe(true);
    expect(all.length).toBeGreaterThan(10);
    expect(all.every((c) => c.window.length === Math.min(32_768, c.out))).toBe(true);
    // Two members: the second one's start needs no window.
    const { blob, scan } = layers[2]!;
    const half = Math.floor(tar.length / 2);
    const learned: LearnedCheckpoint[] = [];
    await collect(inflateLearning(scan.checkpoints[0]!, chunked(blob.subarray(fetchStart(scan.checkpoints[0]!)), 65_536), [{ at: half, kind: 'start' }], (c) => learned.push(c)));
    expect(learned).toHaveLength(1);
    expect(learned[0]!.out).toBeLessThanOrEqual(half);
  });

  it('stops where the input stops, settling a pending start with the last boundary seen', async () => {
    const { blob, scan } = layers[0]!;
    const cp = scan.checkpoints[0]!;
    const learned: LearnedCheckpoint[] = [];
    const out = await collect(inflateLearning(cp, chunked(blob.subarray(fetchStart(cp), fetchStart(cp) + 200_000), 10_000), [{ at: tar.length - 1, kind: 'start' }], (c) => learned.push(c)));
    expect(out.equals(tar.subarray(0, out.length))).toBe(true);
    expect(learned).toHaveLength(1);
    expect(learned[0]!.out).toBeLessThanOrEqual(out.length);
  });
});
