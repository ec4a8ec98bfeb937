/**
 * The tier counters that outlive processes: records written by two processes at once while
 * compactions run sum exactly; a crash at any step of a write or a compaction counts nothing twice.
 */
import { spawn } from 'node:child_process';
import { copyFile, cp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { compactStats, readStats, recordStats, statsDir } from '../../src/storage/stats-log.js';
import { Storage } from '../../src/storage/storage.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const RECORDER = fileURLToPath(new URL('./fixtures/record-stats.ts', import.meta.url));

function runRecorder(cacheDir: string, layer: TestLayer, extraRecords: number, pauseMs = 0): Promise<Record<string, number>> {
  const child = spawn(process.execPath, ['--import', 'tsx', RECORDER, JSON.stringify({ cacheDir, layerFile: layer.file, fields: layer.fields, extraRecords, pauseMs })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, number>) : reject(new Error(`recorder exited ${code}: ${err}`))));
  });
}

describe('stats records in the cache directory', () => {
  let root: string;
  let layer: TestLayer;

  beforeAll(async () => {
    root = await tempDir('clip-stats-');
    layer = await makeTarLayer(root, { files: 4, bytesEach: 60_000, chunkSize: 16 * 1024 });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('sums records; zero counters write nothing', async () => {
    const dir = path.join(root, 'sum');
    expect(await recordStats(dir, { 'hits.disk': 0 })).toBeUndefined();
    await recordStats(dir, { 'hits.disk': 3, 'bytes.disk': 100 });
    await recordStats(dir, { 'hits.disk': 2, 'hits.source': 1 });
    expect(await readStats(dir)).toEqual({ counters: { 'hits.disk': 5, 'bytes.disk': 100, 'hits.source': 1 }, records: 2, unreadable: 0 });
    expect(await readStats(path.join(root, 'never-used'))).toEqual({ counters: {}, records: 0, unreadable: 0 });
  });

  it('two processes recording at once, with compactions and readers meanwhile: exact sums', async () => {
    const dir = path.join(root, 'two');
    let running = true;
    // Records 2 ms apart keep the writers busy for ~300 ms, so compactions overlap them however fast the machine.
    const both = Promise.all([runRecorder(dir, layer, 150, 2), runRecorder(dir, layer, 150, 2)]).finally(() => (running = false));
    let compactions = 0;
    const compactor = (async () => {
      while (running) {
        const { absorbed } = await compactStats(dir);
        if (absorbed > 0) compactions++;
        const seen = (await readStats(dir)).counters['test.writes'] ?? 0;
        expect(seen).toBeLessThanOrEqual(300); // never counted twice, even mid-compaction
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const [a, b] = await both;
    await compactor;
    expect(compactions).toBeGreaterThan(0);
    const total = await readStats(dir);
    expect(total.counters['test.writes']).toBe(300);
    for (const key of ['hits.source', 'hits.disk', 'bytes.source', 'bytes.disk', 'requests.source']) {
      expect(total.counters[key], key).toBe(a![key]! + b![key]!);
    }
    // They share the directory: which one fetched from the source is a race; together they did.
    expect(a!['hits.source']! + b!['hits.source']!).toBeGreaterThan(0);
    expect(a!['hits.disk']).toBeGreaterThan(0);
    // One more compaction folds everything into one summary with the same sums.
    await compactStats(dir);
    expect(await readStats(dir)).toEqual({ ...total, records: 1 });
    expect((await readdir(statsDir(dir))).filter((n) => !n.startsWith('.'))).toHaveLength(1);
  }, 120_000);

  it('a crash at any step counts nothing twice and loses nothing written', async () => {
    const dir = path.join(root, 'crash');
    const sdir = statsDir(dir);
    const names: string[] = [];
    for (let i = 1; i <= 4; i++) names.push((await recordStats(dir, { n: i }))!);
    // A writer killed mid-write leaves a temporary, never a record.
    await writeFile(path.join(sdir, '.tmp-dead'), '{"v":1,"counters":{"n":10');
    // A compactor killed after claiming (renaming) one record: the claim still counts, once.
    const claimed = path.join(sdir, `c-zz9-${names[0]}`);
    await copyFile(path.join(sdir, names[0]!), claimed);
    await rm(path.join(sdir, names[0]!));
    expect((await readStats(dir)).counters).toEqual({ n: 10 });
    // A listing that raced a rename shows a record under both names: still once.
    await copyFile(claimed, path.join(sdir, names[0]!));
    expect((await readStats(dir)).counters).toEqual({ n: 10 });
    await rm(path.join(sdir, names[0]!));
    // Keep copies of what the next compaction claims, then put them back after it: as if it had
    // died after writing its summary but before unlinking what it absorbed.
    const keep = path.join(root, 'keep');
    await rm(keep, { recursive: true, force: true });
    await cp(sdir, keep, { recursive: true });
    // The claim above is fresh (another compactor may be alive): left alone, still counted once.
    expect((await compactStats(dir)).absorbed).toBe(3);
    expect((await readStats(dir)).counters).toEqual({ n: 10 });
    for (const n of names.slice(1)) await copyFile(path.join(keep, n), path.join(sdir, `c-dead1-${n}`));
    expect((await readStats(dir)).counters).toEqual({ n: 10 });
    // Much later: stale claims are taken over, leftovers absorbed by a summary removed.
    const later = Date.now() + 60 * 60_000;
    await compactStats(dir, later);
    expect(await readStats(dir)).toEqual({ counters: { n: 10 }, records: 1, unreadable: 0 });
    expect((await readdir(sdir)).length).toBe(1);
  });

  it('a long-lived store records increments, at intervals and at close', async () => {
    const dir = path.join(root, 'store');
    const metrics = new StorageMetrics();
    const storage = new Storage({ disk: await DiskCache.open({ dir }), source: new ProbeSource([layer]), metrics, statsIntervalMs: 30 });
    await storage.read(layer.record, 0, 40_000);
    // An interval's record, waited for itself: a fixed wait lost to a stalled event loop, where the
    // interval's timer and the wait's came due together and the look ran before the record's write.
    await vi.waitUntil(async () => ((await readStats(dir)).counters['hits.source'] ?? 0) > 0, { timeout: 10_000, interval: 20 });
    await storage.read(layer.record, 0, 40_000);
    const final = await metrics.snapshot();
    await storage.close();
    const total = await readStats(dir);
    expect(total.records).toBeGreaterThanOrEqual(2);
    expect(total.counters['hits.source']).toBe(final['hits.source']);
    expect(total.counters['hits.disk']).toBe(final['hits.disk']);
    expect(total.counters['bytes.disk']).toBe(final['bytes.disk']);
  });
});
