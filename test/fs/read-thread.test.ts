/**
 * READs answered in the FUSE reader threads (src/fs/read-thread.ts): the basic fixture indexed with
 * 64 KiB chunks, mounted in this process, read from child processes at random offsets, across chunk
 * edges and at the end of a file, against `umoci unpack` of the same image. Each read drops the
 * file's page cache first (POSIX_FADV_DONTNEED), so every one reaches the server as a READ.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/index/reader.js';
import { READ_AHEAD_BLOCK, READ_AROUND, readAheadRange, readAroundRange } from '../../src/fs/read-thread.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { VERIFIED_SHARED } from '../../src/storage/shared-layer-state.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { umociUnpack } from '../support/tools.js';
import { python, RANDOM_PREADS, run } from '../fuse/tools.js';
import { indexImage, mountIndex, type MountedImage } from './helpers.js';

const FILE = 'opt/app/large.bin';
const CHUNK = 64 * 1024;

/** Reads [offset, length] pairs from the mount and the reference file; prints the pairs that differ. */
const COMPARE = String.raw`
import os, sys, json
mnt, ref, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
a = os.open(mnt, os.O_RDONLY); b = os.open(ref, os.O_RDONLY)
os.posix_fadvise(a, 0, 0, os.POSIX_FADV_RANDOM)
bad = []
for off, n in plan:
    os.posix_fadvise(a, 0, 0, os.POSIX_FADV_DONTNEED)
    if os.pread(a, n, off) != os.pread(b, n, off): bad.append([off, n])
print(json.dumps({"reads": len(plan), "bad": bad}))
`;

/**
 * Drops the layer's cache file from the page cache, reads 256 KiB at the start of the file through
 * the mount (one READ: the mount's pages dropped too, readahead off), and waits up to 10 s for the
 * cache file's resident bytes (fincore) to stop growing. Prints {before, after, cap}: cap, the most
 * one WILLNEED reads on the cache file's disk (read_ahead_kb or max_sectors_kb), 0 when unknown.
 */
const FIRST_READ = String.raw`
import os, sys, json, time, subprocess
mnt, layer = sys.argv[1], sys.argv[2]
def resident():
    return int(subprocess.run(["fincore", "-b", "-n", "-o", "RES", layer], capture_output=True, text=True, check=True).stdout.split()[0])
st = os.stat(layer)
q = "/sys/dev/block/%d:%d/" % (os.major(st.st_dev), os.minor(st.st_dev))
q = q + "queue/" if os.path.exists(q + "queue") else q + "../queue/"
try: cap = 1024 * max(int(open(q + "read_ahead_kb").read()), int(open(q + "max_sectors_kb").read()))
except OSError: cap = 0
os.sync()
l = os.open(layer, os.O_RDONLY); os.posix_fadvise(l, 0, 0, os.POSIX_FADV_DONTNEED)
before = resident()
f = os.open(mnt, os.O_RDONLY)
os.posix_fadvise(f, 0, 0, os.POSIX_FADV_RANDOM); os.posix_fadvise(f, 0, 0, os.POSIX_FADV_DONTNEED)
assert len(os.pread(f, 262144, 0)) == 262144
# The read ahead's disk reads land after the READ: wait (up to 10 s) until what the test wants is
# in, or nothing more comes for 2 s (a loaded disk may take its time).
want = 262144 + min(cap, int(sys.argv[3]) - 262144) / 2
after, end, still = resident(), time.time() + 10, 0
while time.time() < end and after <= want and still < 10:
    time.sleep(0.2)
    now = resident()
    still = still + 1 if now == after else 0
    after = now
print(json.dumps({"before": before, "after": after, "cap": cap}))
`;

function inodeOf(index: ImageIndex, path: string): number {
  let ino = index.rootIno;
  for (const part of path.split('/')) ino = index.lookup(ino, Buffer.from(part));
  return ino;
}

/** Reads at every chunk edge of the file (either side and across), at random offsets, and at its end. */
function readPlan(index: ImageIndex): [number, number][] {
  const loc = index.dataLocation(inodeOf(index, FILE))!;
  const plan: [number, number][] = [];
  for (let edge = Math.ceil(loc.offset / CHUNK) * CHUNK; edge < loc.offset + loc.size; edge += CHUNK) {
    const at = edge - loc.offset;
    if (at >= 1) plan.push([at - 1, 2]);
    if (at >= 4096) plan.push([at - 4096, 8192]);
    plan.push([at, 4096]);
  }
  let seed = 7;
  for (let k = 0; k < 40; k++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    plan.push([seed % loc.size, 1 + (seed % 200_000)]);
  }
  plan.push([loc.size - 10, 100], [loc.size - 1, 1], [loc.size, 10], [loc.size + 5000, 10]);
  return plan;
}

function reads(m: MountedImage): { thread: number; main: number } {
  const thread = m.mount.server.threadCounts.get('READ') ?? 0;
  return { thread, main: (m.mount.server.opCounts.get('READ') ?? 0) - thread };
}

async function compare(m: MountedImage, ref: string, plan: [number, number][]): Promise<{ reads: number; bad: [number, number][] }> {
  const r = await python(COMPARE, join(m.dir, FILE), ref, JSON.stringify(plan));
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as { reads: number; bad: [number, number][] };
}

/** Verified marks of a layer of `count` chunks, those in `verified` set. */
function marks(count: number, verified: number[]): Uint8Array {
  const m = new Uint8Array(count);
  for (const i of verified) m[i] = VERIFIED_SHARED;
  return m;
}

describe('the pages read around a small READ', () => {
  const K = 1024;
  const all = marks(64, [...Array(64).keys()]);

  it('covers the aligned window around the READ where its chunks are verified', () => {
    // A 4 KiB READ in the middle: the whole aligned window, over chunks of 64 KiB or of 4 KiB.
    expect(readAroundRange(3 * READ_AROUND + 5000, 4096, 64 * K, all)).toEqual({ position: 3 * READ_AROUND, length: READ_AROUND });
    expect(readAroundRange(READ_AROUND + 5000, 4096, 4 * K, all)).toEqual({ position: READ_AROUND, length: READ_AROUND });
    // A READ across a window edge: both windows.
    expect(readAroundRange(READ_AROUND - 100, 200, 64 * K, all)).toEqual({ position: 0, length: 2 * READ_AROUND });
    // Chunks bigger than the window: the window alone.
    expect(readAroundRange(3 * READ_AROUND + 5000, 4096, 1024 * K, marks(4, [0]))).toEqual({ position: 3 * READ_AROUND, length: READ_AROUND });
  });

  it('stops at a chunk not verified here (a hole not fetched yet) and at the layer end', () => {
    // 64 KiB chunks 2 and 3 make window 1; only 3 (the READ's) is verified.
    expect(readAroundRange(3 * 64 * K + 100, 4096, 64 * K, marks(64, [3]))).toEqual({ position: 3 * 64 * K, length: 64 * K });
    // 4 KiB chunks: the READ's chunk 33 and its neighbours 32 and 34; 31 and 35 are not verified.
    expect(readAroundRange(33 * 4 * K, 4096, 4 * K, marks(64, [30, 32, 33, 34, 36]))).toEqual({ position: 32 * 4 * K, length: 12 * K });
    // The last chunk of the layer: nothing past it.
    expect(readAroundRange(63 * 4 * K, 4096, 4 * K, marks(64, [...Array(64).keys()]))).toEqual({ position: 32 * 4 * K, length: 32 * 4 * K });
    // A layer of 60 chunks ends inside the window: it stops at the layer's end.
    expect(readAroundRange(59 * 4 * K, 4096, 4 * K, marks(60, [...Array(60).keys()]))).toEqual({ position: 32 * 4 * K, length: 28 * 4 * K });
  });

  it('adds nothing to a READ of the window or more, nor where the READ is all that is verified', () => {
    expect(readAroundRange(READ_AROUND, READ_AROUND, 64 * K, all)).toBeUndefined();
    expect(readAroundRange(5, 4 * READ_AROUND, 64 * K, all)).toBeUndefined();
    expect(readAroundRange(5 * 4 * K, 4096, 4 * K, marks(64, [5]))).toBeUndefined();
  });
});

describe('the blocks read ahead of a big READ', () => {
  const M = 1024 * 1024;
  const B = READ_AHEAD_BLOCK;
  const layer = (chunks: number, verified = chunks): Uint8Array => marks(chunks, [...Array(verified).keys()]);

  it("reads from a file's first READ to the end of the next block", () => {
    // 1 MiB chunks, 4 blocks' worth, all verified: a file at 3 MiB, its first READ of 256 KiB.
    expect(readAheadRange(3 * M, 256 * 1024, 3 * M, M, layer(4 * B / M))).toEqual({ position: 3 * M + 256 * 1024, length: 2 * B - 3 * M - 256 * 1024 });
  });

  it('reads the next block once a READ reaches into it, and asks nothing for a READ within a block', () => {
    const l = layer(4 * B / M);
    expect(readAheadRange(B - M / 2, M, 0, M, l)).toEqual({ position: B + M / 2, length: 2 * B - M / 2 });
    // A READ ending on a block's edge goes on into the next block: read that one and the one after.
    expect(readAheadRange(B - M, M, 0, M, l)).toEqual({ position: B, length: 2 * B });
    expect(readAheadRange(B, M, 0, M, l)).toBeUndefined();
    expect(readAheadRange(B + 2 * M, M, 0, M, l)).toBeUndefined();
  });

  it('stops at a chunk not verified here and at the layer end, and adds nothing to a small READ', () => {
    // Chunk 10 not fetched yet: up to it, across the file's end (the files after it in the layer).
    expect(readAheadRange(3 * M, M, 3 * M, M, marks(32, [...Array(32).keys()].filter((c) => c !== 10)))).toEqual({ position: 4 * M, length: 6 * M });
    expect(readAheadRange(3 * M, M, 3 * M, M, layer(6))).toEqual({ position: 4 * M, length: 2 * M });
    expect(readAheadRange(3 * M, M, 3 * M, M, layer(4))).toBeUndefined();
    expect(readAheadRange(3 * M, READ_AROUND - 1, 3 * M, M, layer(32))).toBeUndefined();
  });
});

describe.skipIf(skipUnlessRoot())('READs answered in the FUSE reader threads', () => {
  let work: string;
  let index: ImageIndex;
  let ref: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-read-thread-'));
    const fx = await fixture('basic');
    index = await indexImage(fx.ref, { chunkSize: CHUNK });
    ref = join(await umociUnpack(fx.layoutDir, 'latest', join(work, 'unpack')), FILE);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  describe('one reader thread', () => {
    let m: MountedImage;
    beforeAll(async () => {
      m = await mountIndex(index, { mount: { readerThreads: 1 } });
    });
    afterAll(async () => {
      await m?.close();
    });

    it('serves verified chunks in the thread, byte-identical to umoci unpack at chunk edges, random offsets and the end', async () => {
      // Cold: every chunk is fetched, verified and kept by the main thread's read path.
      const warm = await run('sha256sum', [join(m.dir, FILE), ref]);
      const [a, b] = warm.stdout.trim().split('\n').map((l) => l.split(' ')[0]);
      expect(a).toBe(b);
      const before = reads(m);
      const plan = readPlan(index);
      const result = await compare(m, ref, plan);
      expect(result).toEqual({ reads: plan.length, bad: [] });
      const after = reads(m);
      expect(after.thread - before.thread).toBeGreaterThanOrEqual(plan.length - 2); // the two past EOF never reach the server
      expect(after.main).toBe(before.main);
      // A big READ (a sequential reader's 1 MiB) is answered in the thread too, byte-identical.
      expect(await compare(m, ref, [[0, 1 << 20], [5000, 900_000]])).toEqual({ reads: 2, bad: [] });
      const big = reads(m);
      expect(big.main).toBe(after.main);
      expect(big.thread).toBeGreaterThan(after.thread);
      expect(m.fs.readsInFlight).toBe(0);
      // The thread's reads are counted as disk hits once folded into the storage metrics.
      m.fs.foldThreadReads();
      const hits = m.storage.metrics.hits.get().values.find((v) => v.labels.tier === 'disk')?.value ?? 0;
      expect(hits).toBeGreaterThanOrEqual(after.thread - before.thread);
    });

    it("reads the cache file ahead of a file's first big READ, past the READ's own bytes", async (ctx) => {
      await run('cat', [join(m.dir, FILE)]); // every chunk of it verified here
      const loc = index.dataLocation(inodeOf(index, FILE))!;
      const layerFile = m.storage.disk.pathOf(indexLayers(index)[loc.layer]!);
      const r = await python(FIRST_READ, join(m.dir, FILE), layerFile, String(loc.size));
      expect(r.stderr).toBe('');
      const { before, after, cap } = JSON.parse(r.stdout) as { before: number; after: number; cap: number };
      // Only where the page cache can be dropped (not tmpfs) and the disk's readahead is known.
      if (before > 64 * 1024 || cap < 512 * 1024) ctx.skip();
      // Without the read ahead the kernel reads a lone 256 KiB READ of the cache file as it is (at most twice that).
      const ahead = Math.min(cap, loc.size - 256 * 1024);
      expect(after).toBeGreaterThan(256 * 1024 + ahead / 2);
    });

    it('sends every READ to the main thread while thread reads are switched off (a profile recording)', async () => {
      await run('cat', [join(m.dir, FILE)]);
      const plan = readPlan(index).slice(0, 30);
      m.fs.setThreadReads(false);
      expect(m.fs.threadReads).toBe(false);
      const off0 = reads(m);
      expect((await compare(m, ref, plan)).bad).toEqual([]);
      const off1 = reads(m);
      expect(off1.thread).toBe(off0.thread);
      expect(off1.main - off0.main).toBeGreaterThanOrEqual(plan.length);

      m.fs.setThreadReads(true);
      expect((await compare(m, ref, plan)).bad).toEqual([]);
      const on = reads(m);
      expect(on.main).toBe(off1.main);
      expect(on.thread - off1.thread).toBeGreaterThanOrEqual(plan.length);
    });
  });

  it('never serves a chunk corrupted on disk after an earlier process verified it: the main thread refetches it', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'clip-read-thread-cache-'));
    try {
      const first = await mountIndex(index, { cacheDir });
      await run('cat', [join(first.dir, FILE)]);
      const loc = index.dataLocation(inodeOf(index, FILE))!;
      const layerFile = first.storage.disk.pathOf(indexLayers(index)[loc.layer]!);
      await first.close();

      // Flip a byte in the middle of the file's third chunk, as disk rot or a hand would.
      const at = Math.ceil(loc.offset / CHUNK) * CHUNK + 2 * CHUNK + 1234;
      const fh = await open(layerFile, 'r+');
      const byte = Buffer.alloc(1);
      await fh.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0xff;
      await fh.write(byte, 0, 1, at);
      await fh.close();

      const second = await mountIndex(index, { cacheDir });
      try {
        const bad = at - loc.offset;
        // The first read (of the chunk after the damaged one) opens the layer's cache file and
        // verifies that chunk: the thread may serve from the file from then on. The next ones reach
        // the damaged chunk, which no process has verified since.
        const plan: [number, number][] = [[bad + CHUNK, 1], [bad - 10, 20], [bad, 1], [bad - 5000, 10_000], [0, 1 << 20], [bad, 4096]];
        expect((await compare(second, ref, plan)).bad).toEqual([]);
        const failures = second.storage.metrics.verifyFailures.get().values.find((v) => v.labels.tier === 'disk')?.value ?? 0;
        expect(failures).toBe(1);
        // Refetched and kept: the disk holds the right byte again, and later reads of it come from the thread.
        const fixed = await open(layerFile, 'r');
        const now = Buffer.alloc(1);
        await fixed.read(now, 0, 1, at);
        await fixed.close();
        expect(now[0]).toBe(byte[0]! ^ 0xff);
        const before = reads(second);
        expect((await compare(second, ref, plan)).bad).toEqual([]);
        expect(reads(second).thread).toBeGreaterThan(before.thread);
      } finally {
        await second.close();
      }
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('serves concurrent readers from several reader threads, all reading the one /dev/fuse descriptor', async () => {
    const m = await mountIndex(index, { mount: { readerThreads: 3 } });
    try {
      expect(m.mount.server.readerThreads).toBe(3);
      await run('cat', [join(m.dir, FILE)]);
      const before = reads(m);
      const r = await python(RANDOM_PREADS, join(m.dir, FILE), ref, '8', '150', '1,4096,65536,200000');
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('0');
      const after = reads(m);
      expect(after.thread - before.thread).toBeGreaterThan(8 * 150);
      // Metadata answered in the threads still right through every descriptor.
      const st = await python('import os, sys; print(os.stat(sys.argv[1]).st_size)', join(m.dir, FILE));
      expect(st.stdout.trim()).toBe('3000000');
      expect(m.fs.readsInFlight).toBe(0);
    } finally {
      await m.close();
    }
  });
});
