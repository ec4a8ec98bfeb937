/**
 * Learned checkpoints through the read path, against a real registry (docker-registry) behind a
 * counting proxy: a store that reads scattered ranges learns checkpoints where its fetches began
 * and ended; a fresh store given only those fetches fewer compressed bytes for the same reads, and
 * gets the same verified bytes; a wrong learned checkpoint is caught by chunk verification,
 * dropped, and the read is served from the index's own checkpoints.
 */
import fs from 'node:fs';
import { rm } from 'node:fs/promises';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LearnedCheckpoint } from '../../src/archive/learned-checkpoint.js';
import { scanLayer } from '../../src/archive/scan.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { RegistryPusher } from '../../src/oci/push.js';
import { RegistryClient } from '../../src/oci/registry-client.js';
import { RegistryRepository } from '../../src/oci/registry-source.js';
import { CheckpointSource, layerFromScan, type CheckpointSourceOptions, type ResumableLayer } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { chunked, makeTar, run, tmpDir } from '../archive/fixtures.js';
import { blobGets, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { tempDir } from './helpers.js';

const CHUNK = 64 * 1024;
const SPAN = 1024 * 1024;
const REPO = 'learned/layers';

let registry: TestRegistry;
let proxy: FaultProxy;
let dir: string;
let tar: Buffer;
const layers: { name: string; layer: ResumableLayer }[] = [];

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  dir = tmpDir('clip-learned-');
  // Python sources, a compressible text and 300 kB of random bytes (stored deflate blocks).
  tar = makeTar(dir);
  const half = Math.floor(tar.length / 2);
  const blobs: [string, Buffer][] = [
    ['GNU gzip -6', run('gzip', ['-6', '-c'], tar)],
    ["node's zlib", zlib.gzipSync(tar)],
    ['two members (gzip -1, then node)', Buffer.concat([run('gzip', ['-1', '-c'], tar.subarray(0, half)), zlib.gzipSync(tar.subarray(half))])],
  ];
  const repo = new RegistryRepository(new RegistryClient(registry.host), REPO);
  for (const [name, blob] of blobs) {
    const scan = await scanLayer(chunked(blob, 65_536), { compression: 'gzip', span: SPAN, chunkSize: CHUNK, name });
    expect(scan.digest).toBe(sha256Digest(blob));
    await new RegistryPusher(repo).pushBlob({ digest: scan.digest, size: blob.length }, (s, e) => blob.subarray(s, e));
    layers.push({ name, layer: layerFromScan(scan) });
  }
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Scattered small reads, as a program opening files across a layer does. */
function reads(): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 1; k <= 9; k++) {
    const at = Math.floor((tar.length * k) / 10) + 12_345;
    out.push([at, 3000]);
  }
  return out;
}

/** A fresh store over the registry (through the proxy) and an empty cache, for `body`. */
async function withStorage<T>(body: (s: Storage, source: CheckpointSource) => Promise<T>, opts: CheckpointSourceOptions = { learn: true }): Promise<T> {
  const cache = await tempDir();
  const disk = await DiskCache.open({ dir: cache });
  const source = new CheckpointSource(new RegistryRepository(new RegistryClient(proxy.host), REPO), opts);
  const s = new Storage({ disk, source, readaheadChunks: 0, retryBackoffMs: 5, statsIntervalMs: 0 });
  try {
    return await body(s, source);
  } finally {
    await s.close();
    await rm(cache, { recursive: true, force: true });
  }
}

/** Blob bytes the proxy sent for `layer` while `work` ran. */
async function bytesFetched(layer: ResumableLayer, work: () => Promise<void>): Promise<number> {
  const gets = () => proxy.requests.filter(blobGets(layer.digest)).reduce((n, r) => n + r.bytes, 0);
  const before = gets();
  await work();
  return gets() - before;
}

async function readAll(s: Storage, layer: ResumableLayer): Promise<void> {
  for (const [at, n] of reads()) expect((await s.read(layer, at, n)).equals(tar.subarray(at, at + n))).toBe(true);
}

describe('learned checkpoints', () => {
  it('a store given the checkpoints another learned fetches fewer compressed bytes for the same reads', async () => {
    for (const { name, layer } of layers) {
      let learned: LearnedCheckpoint[] = [];
      const first = await bytesFetched(layer, () =>
        withStorage(async (s) => {
          await readAll(s, layer);
          learned = s.learnedCheckpoints(layer);
        }),
      );
      // A start and an end for (nearly) every read: each began and ended inside a span.
      expect(learned.length, name).toBeGreaterThanOrEqual(reads().length);
      expect(learned.every((c, i) => i === 0 || c.out > learned[i - 1]!.out), name).toBe(true);
      const second = await bytesFetched(layer, () =>
        withStorage(async (s, source) => {
          expect(s.addLearnedCheckpoints(layer, learned)).toBe(learned.length);
          await readAll(s, layer);
          expect(source.stats.learnedDropped, name).toBe(0);
          expect((await s.metrics.snapshot())['verifyFailures.source'], name).toBe(0);
        }),
      );
      // Measured: 1.30 MB then 0.57 MB (gzip -6), 1.30 then 0.40 (zlib), 1.42 then 0.43 (two members).
      expect(second, `${name}: ${first} then ${second} bytes`).toBeLessThan(first * 0.6);
      // Their windows kept deflated (as after a profile's prefetch): the same reads, the same bytes.
      const packed = await bytesFetched(layer, () =>
        withStorage(async (s, source) => {
          s.addLearnedCheckpoints(layer, learned);
          const raw = source.learnedWindowBytes(layer);
          expect(await s.packLearned(), name).toBeGreaterThan(0);
          expect(source.learnedWindowBytes(layer), name).toBeLessThan(raw);
          await readAll(s, layer);
          expect(source.stats.learnedDropped, name).toBe(0);
          expect((await s.metrics.snapshot())['verifyFailures.source'], name).toBe(0);
        }),
      );
      // (Not exactly `second`: a flight still streaming when the storage closes counts what it got.)
      expect(packed, `${name}: packed windows, ${first} then ${packed} bytes`).toBeLessThan(first * 0.6);
      // Handed over as a decoded profile hands them (windows deflated, inflated where a fetch starts).
      const fromProfile = learned.map((c) => ({ out: c.out, inBits: c.inBits, window: Buffer.alloc(0), packed: zlib.deflateRawSync(c.window) }));
      const lazy = await bytesFetched(layer, () =>
        withStorage(async (s, source) => {
          expect(s.addLearnedCheckpoints(layer, fromProfile)).toBe(learned.length);
          expect(source.learnedWindowBytes(layer), name).toBe(fromProfile.reduce((n, c) => n + c.packed.length, 0));
          await readAll(s, layer);
          expect(source.stats.learnedDropped, name).toBe(0);
          expect((await s.metrics.snapshot())['verifyFailures.source'], name).toBe(0);
          // The windows fetches started at were inflated, and are let go by packLearned.
          expect(source.learnedWindowBytes(layer), name).toBeGreaterThan(fromProfile.reduce((n, c) => n + c.packed.length, 0));
          expect(await s.packLearned(), name).toBeGreaterThan(0);
        }),
      );
      expect(lazy, `${name}: windows inflated on use, ${first} then ${lazy} bytes`).toBeLessThan(first * 0.6);
    }
  });

  it('a wrong learned checkpoint (window, offset or bit position) is caught, dropped, and the read served right', async () => {
    const { layer } = layers[0]!;
    let learned: LearnedCheckpoint[] = [];
    await withStorage(async (s) => {
      await readAll(s, layer);
      learned = s.learnedCheckpoints(layer);
    });
    const withWindow = learned.filter((c) => c.window.length === 32_768);
    expect(withWindow.length).toBeGreaterThan(3);
    const wrong: LearnedCheckpoint[] = [
      { ...withWindow[0]!, window: Buffer.from(withWindow[0]!.window).fill(0x41, 0, 32_768) },
      { ...withWindow[1]!, out: withWindow[1]!.out - 700 },
      { ...withWindow[2]!, inBits: withWindow[2]!.inBits + 13 },
      // Handed over deflated (as a profile carries it), and not deflate data.
      { ...withWindow[3]!, window: Buffer.alloc(0), packed: Buffer.from('not a deflated window') },
    ];
    for (const bad of wrong) {
      await withStorage(async (s, source) => {
        s.addLearnedCheckpoints(layer, [bad]);
        // A read in the chunk after the bad checkpoint: the nearest checkpoint before that chunk
        // is the bad one, so the fetch inflates from it.
        const at = Math.ceil((bad.out + 1) / CHUNK) * CHUNK + 10;
        expect((await s.read(layer, at, 2000)).equals(tar.subarray(at, at + 2000))).toBe(true);
        expect(source.stats.learnedDropped).toBe(1);
        // Gone (the store may have learned the right one at that offset since, not this one).
        expect(s.learnedCheckpoints(layer).some((c) => c.out === bad.out && c.inBits === bad.inBits && c.window.equals(bad.window))).toBe(false);
        expect((await s.metrics.snapshot())['verifyFailures.source']).toBeGreaterThanOrEqual(1);
      });
    }
  });

  it('learns nothing when told not to; uses handed-over checkpoints with merging off too', async () => {
    const { layer } = layers[1]!;
    let learned: LearnedCheckpoint[] = [];
    await withStorage(async (s) => {
      await readAll(s, layer);
      learned = s.learnedCheckpoints(layer);
    });
    await withStorage(async (s) => {
      await readAll(s, layer);
      expect(s.learnedCheckpoints(layer)).toEqual([]);
    }, { learn: false });
    const without = await bytesFetched(layer, () => withStorage((s) => readAll(s, layer), { merge: false }));
    const given = await bytesFetched(layer, () =>
      withStorage(async (s) => {
        s.addLearnedCheckpoints(layer, learned);
        await readAll(s, layer);
      }, { merge: false }),
    );
    expect(given, `${without} then ${given} bytes`).toBeLessThan(without * 0.6);
  });

  it('stopLearning() lets go of what was captured and learns no more, keeping handed-over checkpoints', async () => {
    const [a, b] = [layers[0]!.layer, layers[1]!.layer];
    let given: LearnedCheckpoint[] = [];
    await withStorage(async (s) => {
      await readAll(s, b);
      given = s.learnedCheckpoints(b);
    });
    await withStorage(async (s, source) => {
      expect(s.addLearnedCheckpoints(b, given)).toBe(given.length);
      await readAll(s, a);
      expect(s.learnedCheckpoints(a).length).toBeGreaterThan(0);
      s.stopLearning();
      expect(s.learnedCheckpoints(a)).toEqual([]);
      const learnedBefore = source.stats.learned;
      // New reads of the layer (a fresh disk cache is not needed: other ranges of it) learn nothing.
      const at = Math.floor(tar.length / 20);
      expect((await s.read(a, at, 3000)).equals(tar.subarray(at, at + 3000))).toBe(true);
      expect(source.stats.learned).toBe(learnedBefore);
      expect(s.learnedCheckpoints(a)).toEqual([]);
      // What another node handed over is still planned over and listed.
      expect(source.learnedCheckpoints(b)).toHaveLength(given.length);
    });
  });

  it('refuses a learned checkpoint that cannot belong to the layer, naming it', async () => {
    const { layer } = layers[0]!;
    await withStorage(async (s) => {
      const bad = { out: layer.uncompressedSize + 5, inBits: 800, window: Buffer.alloc(10) };
      expect(() => s.addLearnedCheckpoints(layer, [bad])).toThrow(expect.objectContaining({ code: 'EINVAL', object: layer.digest }));
      expect(() => s.addLearnedCheckpoints(layer, [{ out: 100_000, inBits: 8000, window: Buffer.alloc(40_000) }])).toThrow(/window of 40000 bytes/);
      expect(s.learnedCheckpoints(layer)).toEqual([]);
    });
  });
});
