/**
 * Background completion over a real layer file source: whole layers end up on disk (and reads then
 * need no source), at no more than the rate asked, yielding to readers, and stopping when told.
 */
import { readFile, rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startBackgroundFetch } from '../../src/storage/background-fetch.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 16 * 1024;

describe('background fetch', () => {
  let root: string;
  let a: TestLayer;
  let b: TestLayer;
  const stores: Storage[] = [];

  beforeAll(async () => {
    root = await tempDir('clip-bgfetch-');
    a = await makeTarLayer(root, { files: 6, bytesEach: 40_000, chunkSize: CHUNK, name: 'a' });
    b = await makeTarLayer(root, { files: 3, bytesEach: 30_000, chunkSize: CHUNK, name: 'b' });
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function store(source: ProbeSource, dir: string): Promise<Storage> {
    const s = new Storage({ disk: await DiskCache.open({ dir: `${root}/${dir}` }), source, statsIntervalMs: 0 });
    stores.push(s);
    return s;
  }

  it('completes every layer (each once), after which reads need no source', async () => {
    const source = new ProbeSource([a, b]);
    const s = await store(source, 'complete');
    const bg = startBackgroundFetch(s, [a.record, b.record, a.record], { bytesPerSecond: 1e9, idleMs: 0 });
    await bg.done;
    const rows = await s.disk.describe();
    expect(rows.map((r) => r.presentChunks === r.totalChunks && r.totalChunks! > 0)).toEqual([true, true]);
    const fetched = source.calls.reduce((n, [x, y]) => n + y - x, 0);
    expect(fetched).toBe(a.record.uncompressedSize + b.record.uncompressedSize);
    source.mode = 'down';
    expect((await s.read(a.record, 0, a.record.uncompressedSize)).equals(await readFile(a.file))).toBe(true);
  });

  it('keeps to its rate, and stops (leaving verified chunks only) when told', async () => {
    const source = new ProbeSource([a]);
    const s = await store(source, 'rate');
    // 8 chunks (128 KiB) per window at 64 KiB/s: window k starts no sooner than 2k s after the
    // first. Stopped once the first chunks are in (however long that takes on a loaded machine),
    // well inside the pause that follows the first window.
    const started = Date.now();
    const bg = startBackgroundFetch(s, [a.record], { bytesPerSecond: 64 * 1024, idleMs: 0 });
    const present = async (): Promise<number> => (await s.disk.describe())[0]?.presentChunks ?? 0;
    await vi.waitUntil(async () => (await present()) > 0, { timeout: 30_000, interval: 10 });
    await bg.stop();
    const elapsed = Date.now() - started;
    const row = (await s.disk.describe())[0]!;
    expect(row.totalChunks).toBeGreaterThan(8);
    expect(row.presentChunks).toBeGreaterThan(0);
    expect(row.presentChunks).toBeLessThanOrEqual(8 * (1 + Math.floor(elapsed / 2000)));
    expect(row.presentChunks).toBeLessThan(row.totalChunks!);
    const bytes = await readFile(a.file);
    source.mode = 'down';
    const first = await s.read(a.record, 0, row.presentChunks! * CHUNK);
    expect(first.equals(bytes.subarray(0, row.presentChunks! * CHUNK))).toBe(true);
  });

  it('waits while readers are active', async () => {
    const source = new ProbeSource([a]);
    const s = await store(source, 'idle');
    await s.read(a.record, 0, 10);
    const bg = startBackgroundFetch(s, [a.record], { bytesPerSecond: 1e9, idleMs: 60_000 });
    await new Promise((r) => setTimeout(r, 200));
    expect(source.calls).toHaveLength(1); // the reader's own fetch only
    await bg.stop();
  });

  it('gives a failing layer up after its attempts and goes on to the next', async () => {
    const source = new ProbeSource([b]); // knows b only: a fails with ENOTFOUND
    const s = await store(source, 'fail');
    const bg = startBackgroundFetch(s, [a.record, b.record], { bytesPerSecond: 1e9, idleMs: 0, retryMs: 10, attempts: 2 });
    await bg.done;
    const rows = new Map((await s.disk.describe()).map((r) => [r.diffId, r]));
    expect(rows.get(b.record.diffId)).toMatchObject({ presentChunks: rows.get(b.record.diffId)!.totalChunks });
    expect(rows.get(a.record.diffId)?.presentChunks ?? 0).toBe(0);
  });
});
