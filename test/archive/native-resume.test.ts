import fs from 'node:fs';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inflateGzipNative, outputChunkFor } from '../../src/archive/native-resume.js';
import { fetchStart } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import type { Checkpoint, LayerScan } from '../../src/archive/types.js';
import { isClipError } from '../../src/util/errors.js';
import { chunked, makeTar, run, tmpDir } from './fixtures.js';

let dir: string;
let tar: Buffer;
let first: Buffer;
let second: Buffer;
let blob: Buffer;
let cut: number;
let scan: LayerScan;

beforeAll(async () => {
  dir = tmpDir('clip-native-');
  tar = makeTar(dir);
  cut = Math.floor(tar.length / 2) + 1;
  first = run('gzip', ['-6', '-c'], tar.subarray(0, cut));
  second = zlib.gzipSync(tar.subarray(cut), { level: 9 });
  blob = Buffer.concat([first, second]);
  scan = await scanLayer(chunked(blob, 65_536), { compression: 'gzip', span: 64 * 1024, name: 'two-members' });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function collect(cp: Checkpoint, pieces: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of inflateGzipNative(cp, pieces, 'two-members')) out.push(b);
  return Buffer.concat(out);
}

/** The blob from fetchStart(cp), cut at the given absolute offsets. */
async function* cutAt(from: number, cuts: number[], data = blob): AsyncGenerator<Buffer> {
  let at = from;
  for (const c of [...cuts.filter((x) => x > from && x < data.length).sort((a, b) => a - b), data.length]) {
    if (c > at) yield data.subarray(at, c);
    at = c;
  }
}

function firstMemberCheckpoints(): Checkpoint[] {
  return scan.checkpoints.filter((c) => c.in < first.length);
}

describe('native resume', () => {
  it('the fixture has unaligned checkpoints with every bit count in the first member', () => {
    const bits = new Set(firstMemberCheckpoints().map((c) => c.bits));
    for (let b = 1; b <= 7; b++) expect(bits.has(b), `bits=${b}`).toBe(true);
  });

  it('resumes from every checkpoint of a member through the member boundary to the end', async () => {
    const trailer = first.length - 8;
    // pieces ending exactly at the deflate end, inside the trailer, at the next header and inside it
    const cuts = [trailer, trailer + 3, first.length, first.length + 5];
    for (const cp of firstMemberCheckpoints()) {
      const got = await collect(cp, cutAt(fetchStart(cp), cuts));
      expect(got.equals(tar.subarray(cp.out)), `checkpoint out=${cp.out} bits=${cp.bits}`).toBe(true);
    }
  });

  it('a member ending exactly at a piece boundary, and one-byte pieces around it', async () => {
    const cp = firstMemberCheckpoints().at(-1)!;
    const trailer = first.length - 8;
    const ones = Array.from({ length: 40 }, (_, i) => trailer - 20 + i);
    for (const cuts of [[trailer], [trailer - 1], [trailer + 1], ones]) {
      const got = await collect(cp, cutAt(fetchStart(cp), cuts));
      expect(got.equals(tar.subarray(cp.out)), `cuts ${cuts[0]}`).toBe(true);
    }
  });

  it('a source that reuses one buffer for every piece', async () => {
    const cp = firstMemberCheckpoints()[2]!;
    async function* reusing(): AsyncGenerator<Buffer> {
      const shared = Buffer.alloc(5000);
      for (let at = fetchStart(cp); at < blob.length; at += shared.length) {
        const n = blob.copy(shared, 0, at, at + shared.length);
        yield shared.subarray(0, n);
      }
    }
    const got = await collect(cp, reusing());
    expect(got.equals(tar.subarray(cp.out))).toBe(true);
  });

  it('a partial input gives a prefix of the output, not an error', async () => {
    const cp = firstMemberCheckpoints()[5]!;
    const start = fetchStart(cp);
    const got = await collect(cp, cutAt(start, [], blob.subarray(0, start + 20_000)));
    expect(got.length).toBeGreaterThan(20_000);
    expect(got.equals(tar.subarray(cp.out, cp.out + got.length))).toBe(true);
  });

  it('stopping early ends cleanly', async () => {
    const cp = firstMemberCheckpoints()[3]!;
    for await (const b of inflateGzipNative(cp, cutAt(fetchStart(cp), [fetchStart(cp) + 1000]))) {
      expect(b.equals(tar.subarray(cp.out, cp.out + b.length))).toBe(true);
      break;
    }
  });

  it('checks the CRC of a later member, as the pako path did', async () => {
    const bad = Buffer.from(blob);
    bad[bad.length - 6]! ^= 1;
    const cp = firstMemberCheckpoints().at(-2)!;
    const err = await collect(cp, cutAt(fetchStart(cp), [], bad)).catch((e: unknown) => e);
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect((err as Error).message).toMatch(/^two-members: .*CRC32 mismatch/);
  });

  it('garbage after the member is ECORRUPT; zero padding is not', async () => {
    const cp = firstMemberCheckpoints().at(-1)!;
    const junk = Buffer.concat([first, Buffer.from('junk')]);
    const err = await collect(cp, cutAt(fetchStart(cp), [], junk)).catch((e: unknown) => e);
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`unexpected byte after gzip member at byte ${first.length}`));
    const padded = Buffer.concat([first, Buffer.alloc(100)]);
    const got = await collect(cp, cutAt(fetchStart(cp), [], padded));
    expect(got.equals(tar.subarray(cp.out, cut))).toBe(true);
  });

  it('corrupt deflate data is ECORRUPT naming the layer', async () => {
    const cp = firstMemberCheckpoints()[4]!;
    const bad = Buffer.from(blob);
    for (let i = 0; i < 64; i++) bad[cp.in + 100 + i]! ^= 0x5a;
    const err = await collect(cp, cutAt(fetchStart(cp), [], bad)).catch((e: unknown) => e);
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect((err as Error).message).toMatch(/^two-members: invalid deflate data near byte \d+/);
  });
});

describe('native resume: output buffers sized to the range', () => {
  it('a range of known size is inflated into buffers about its size, not 512 KiB ones, with the same bytes', async () => {
    const cps = firstMemberCheckpoints();
    const cp = cps[Math.floor(cps.length / 2)]!;
    const next = cps.find((c) => c.out > cp.out + 20_000)!;
    const expected = next.out - cp.out;
    const range = async function* (): AsyncGenerator<Buffer> {
      yield* cutAt(fetchStart(cp), [next.in + 1], blob.subarray(0, next.in + 1));
    };
    const sized: Buffer[] = [];
    for await (const b of inflateGzipNative(cp, range(), 'two-members', expected)) sized.push(b);
    const unsized: Buffer[] = [];
    for await (const b of inflateGzipNative(cp, range(), 'two-members')) unsized.push(b);
    const bytes = Buffer.concat(sized);
    expect(bytes.subarray(0, expected).equals(tar.subarray(cp.out, next.out))).toBe(true);
    expect(bytes.equals(Buffer.concat(unsized))).toBe(true);
    // Every byte it gave lies in buffers that hold little else (a keeper may keep views of them).
    const buffers = new Set(sized.map((b) => b.buffer));
    const held = [...buffers].reduce((n, b) => n + b.byteLength, 0);
    expect(held, `${expected} bytes in ${held}`).toBeLessThan(expected + 16 * 1024);
    // (Unsized, the same range held 512 KiB buffers.)
    expect([...new Set(unsized.map((b) => b.buffer))].reduce((n, b) => n + b.byteLength, 0)).toBeGreaterThan(expected + 16 * 1024);
  });

  it('sizes the buffers from the expected output: at least 16 KiB, at most 512 KiB, evenly past that', () => {
    expect(outputChunkFor(undefined)).toBe(512 * 1024);
    expect(outputChunkFor(1)).toBe(16 * 1024);
    expect(outputChunkFor(100_000)).toBeGreaterThan(100_000);
    expect(outputChunkFor(100_000)).toBeLessThan(100_000 + 8192);
    for (const n of [600_000, 1_048_576, 3_000_000]) {
      const c = outputChunkFor(n);
      expect(c).toBeLessThanOrEqual(512 * 1024);
      // The last buffer is filled as the others are, within a page each.
      expect(Math.ceil(n / c) * c - n, `${n} in buffers of ${c}`).toBeLessThan(Math.ceil(n / c) * 8192);
    }
  });
});
