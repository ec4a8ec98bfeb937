/**
 * The prefetch plan (order, chunk alignment, joining, splitting) and the prefetch itself against
 * a real Storage whose source answers slowly: a demand read issued while the prefetch runs is
 * fetched as soon as it is asked for, not behind the prefetch's queue.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planPrefetch, prefetch } from '../../src/profile/prefetch.js';
import type { Logger } from '../../src/util/log.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { Storage } from '../../src/storage/storage.js';
import { layerRecord, type LayerRecord } from '../../src/storage/types.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from '../storage/helpers.js';

const MiB = 1024 * 1024;

function fakeLayer(size: number, chunkSize = MiB): LayerRecord {
  const d = `sha256:${'e'.repeat(64)}`;
  return layerRecord({ diffId: d, digest: d, compression: 'none', compressedSize: size, uncompressedSize: size, chunkSize, chunkDigests: Buffer.alloc(32 * Math.ceil(size / chunkSize)) });
}

describe('planPrefetch', () => {
  it('widens to whole chunks, joins what touches per layer at its first place, splits long pieces, drops ranges outside the layer', () => {
    const a = fakeLayer(40 * MiB);
    const b = fakeLayer(3 * MiB);
    const r = (layer: number, offset: number, length: number): { layer: number; offset: number; length: number; atMs: number; ino: number } => ({ layer, offset, length, atMs: 0, ino: 0 });
    const pieces = planPrefetch([
      r(0, 5 * MiB + 10, 100), // chunk 5
      r(1, 2 * MiB + 1, 10), // layer 1 chunk 2 (last, short)
      r(0, 10 * MiB, 100), // chunk 10
      r(0, 6 * MiB + 5, 2 * MiB), // chunks 6-8: joins chunk 5
      r(0, 100 * MiB, 10), // outside the layer
      r(0, 20 * MiB, 20 * MiB), // chunks 20-39: split
    ], [a, b], { maxPieceBytes: 8 * MiB });
    expect(pieces.map((p) => [p.layerAt, p.offset / MiB, p.length / MiB])).toEqual([
      [0, 5, 4], [1, 2, 1], [0, 10, 1], [0, 20, 8], [0, 28, 8], [0, 36, 4],
    ]);
    const joined = planPrefetch([r(0, 0, 10), r(0, 2 * MiB, 10)], [a, b], { gapChunks: 1 });
    expect(joined.map((p) => [p.offset, p.length])).toEqual([[0, 3 * MiB]]);
  });
});

describe('prefetch through Storage', () => {
  let dir: string;
  let layer: TestLayer;
  const CHUNK = 64 * 1024;

  beforeAll(async () => {
    dir = await tempDir('clip-prefetch-');
    layer = await makeTarLayer(dir, { files: 40, bytesEach: 100_000, chunkSize: CHUNK });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches the pieces through the verified path, and a demand read meanwhile is not queued behind them', async () => {
    const source = new ProbeSource([layer]);
    source.delayMs = 150;
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir: `${dir}/cache`, metrics });
    const storage = new Storage({ disk, metrics, source, statsIntervalMs: 0, readaheadChunks: 0 });
    try {
      const rec = layer.record;
      // Twelve separate chunks in the first part of the layer; the demand read is far from them.
      const ranges = Array.from({ length: 12 }, (_, i) => ({ layer: 0, offset: i * 3 * CHUNK, length: 100, atMs: i, ino: 0 }));
      const pieces = planPrefetch(ranges, [rec]);
      expect(pieces).toHaveLength(12);
      let prefetchDone = false;
      const running = prefetch(storage, pieces, { concurrency: 2 }).then((r) => ((prefetchDone = true), r));
      await new Promise((r) => setTimeout(r, 20));
      const demandAt = rec.uncompressedSize - 3 * CHUNK;
      const callsBefore = source.calls.length;
      const got = await storage.read(rec, demandAt, 1000);
      // The demand read came back while the prefetch still had most of its pieces to go.
      expect(prefetchDone).toBe(false);
      const demandCall = source.calls.findIndex(([s, e]) => s <= demandAt && demandAt < e);
      expect(demandCall).toBeGreaterThanOrEqual(0);
      expect(demandCall).toBeLessThanOrEqual(callsBefore + 2);
      const { readFile } = await import('node:fs/promises');
      const whole = await readFile(layer.file);
      expect(got.equals(whole.subarray(demandAt, demandAt + 1000))).toBe(true);
      const result = await running;
      expect(result).toMatchObject({ pieces: 12, failed: 0, bytes: 12 * CHUNK });
      // Everything prefetched is on disk, verified: reading it again asks the source nothing.
      const calls = source.calls.length;
      for (const p of pieces) expect((await storage.read(rec, p.offset, p.length)).equals(whole.subarray(p.offset, p.offset + p.length))).toBe(true);
      expect(source.calls.length).toBe(calls);
    } finally {
      await storage.close();
    }
  });

  it('logs and goes on when a piece fails: never throws', async () => {
    const source = new ProbeSource([layer]);
    source.mode = 'down';
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir: `${dir}/cache2`, metrics });
    const storage = new Storage({ disk, metrics, source, statsIntervalMs: 0, readTimeoutMs: 500, retryBackoffMs: 10 });
    try {
      const warnings: unknown[] = [];
      const logger = { warn: (o: unknown) => warnings.push(o) } as unknown as Logger;
      const result = await prefetch(storage, planPrefetch([{ layer: 0, offset: 0, length: 10, atMs: 0, ino: 0 }], [layer.record]), { logger });
      expect(result.failed).toBe(1);
      expect(warnings).toHaveLength(1);
    } finally {
      await storage.close();
    }
  });
});
