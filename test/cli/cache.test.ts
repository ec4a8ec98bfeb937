/**
 * clip cache stats and clip cache gc on a cache directory that `clip cat` filled, in this process
 * and in other processes; and the storage flags every reading command takes (--cache-max-size,
 * --read-timeout).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import type { CacheStatsJson } from '../../src/cli/commands/cache.js';
import { storageSettingsOf } from '../../src/cli/read-options.js';
import { seededBytes } from '../../src/oci/build/index.js';
import { fixture } from '../support/fixtures/index.js';
import { clip, clipProcess } from './program.js';

const LIB = seededBytes('basic/lib', 1_500_000, { compressible: 0.7 });

describe('clip cache', () => {
  let tmp: string;
  let index: string;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-cli-cache-'));
    index = join(tmp, 'basic.clip');
    await clip('index', (await fixture('basic')).ref, '-o', index, '--cache-dir', join(tmp, 'index-cache'), '--json');
  });
  afterAll(async () => {
    await closeScanPool();
    await rm(tmp, { recursive: true, force: true });
  });

  async function stats(cacheDir: string): Promise<CacheStatsJson> {
    return JSON.parse((await clip('cache', 'stats', '--cache-dir', cacheDir, '--json')).stdout.toString()) as CacheStatsJson;
  }

  it('stats: layers with chunks present and last use; tier counts summed over processes; gc keeps the counts', async () => {
    const cacheDir = join(tmp, 'c1');
    // A cache directory that does not exist yet is reported, not made.
    await expect(stats(cacheDir)).rejects.toMatchObject({ code: 'ENOTFOUND', message: `${cacheDir}: no such cache directory` });
    await mkdir(cacheDir, { mode: 0o700 });
    expect(await stats(cacheDir)).toMatchObject({ layers: 0, bytesOnDisk: 0, rows: [], records: 0 });
    const before = Date.now() - 1000;
    // Two other processes, one after the other: the first fetches, the second reads the disk.
    for (let i = 0; i < 2; i++) {
      const run = await clipProcess(['cat', index, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.equals(LIB)).toBe(true);
    }
    // And this process.
    expect((await clip('cat', index, '/etc/hostname', '--cache-dir', cacheDir)).stdout.toString()).toBe('clip-basic-2\n');
    const s = await stats(cacheDir);
    expect(s.records).toBe(3);
    expect(s.layers).toBeGreaterThanOrEqual(1);
    expect(s.bytesOnDisk).toBeGreaterThan(0);
    for (const row of s.rows) {
      expect(row.diffId).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(row.size).toBeGreaterThan(0);
      expect(row.presentChunks).toBeGreaterThan(0);
      expect(row.presentChunks).toBeLessThanOrEqual(row.totalChunks!);
      expect(Date.parse(row.lastUse)).toBeGreaterThan(before);
    }
    expect(s.tiers.source.hits).toBeGreaterThan(0);
    expect(s.tiers.source.bytes).toBeGreaterThanOrEqual(LIB.length);
    // The second process read the whole library from disk.
    expect(s.tiers.disk.bytes).toBeGreaterThanOrEqual(LIB.length);
    expect(s.tiers.disk.hits).toBeGreaterThan(0);
    expect(s.tiers.remote).toEqual({ hits: 0, misses: 0, bytes: 0, requests: 0, verifyFailures: 0, errors: 0 });

    const text = (await clip('cache', 'stats', '--cache-dir', cacheDir)).stdout.toString();
    expect(text).toMatch(new RegExp(`^cache ${cacheDir}: ${s.layers} layers?, `));
    expect(text).toContain(s.rows[0]!.diffId);
    expect(text).toMatch(/^source +\d+ +\d+ +[\d.]+ (B|KiB|MiB)/m);
    expect(text).toMatch(/\d+\/\d+ \(\d+%\)/);

    const gc = JSON.parse((await clip('cache', 'gc', '--cache-dir', cacheDir, '--all', '--json')).stdout.toString()) as Record<string, number>;
    expect(gc).toMatchObject({ evicted: s.layers, remainingBytes: 0, statsRecordsCompacted: 3 });
    const after = await stats(cacheDir);
    expect(after).toMatchObject({ layers: 0, bytesOnDisk: 0, rows: [], records: 1 });
    expect(after.tiers).toEqual(s.tiers);
    // Nothing to evict under a generous cap.
    const text2 = (await clip('cache', 'gc', '--cache-dir', cacheDir, '--max-size', '1GiB')).stdout.toString();
    expect(text2).toMatch(/evicted 0 layers \(0 B\), 0 B remain/);
  }, 120_000);

  it('gc --max-size evicts least recently used layers down to the cap', async () => {
    const cacheDir = join(tmp, 'c2');
    await clip('cat', index, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir);
    const s = await stats(cacheDir);
    expect(s.bytesOnDisk).toBeGreaterThan(4096);
    const gc = JSON.parse((await clip('cache', 'gc', '--cache-dir', cacheDir, '--max-size', '4KiB', '--json')).stdout.toString()) as Record<string, number>;
    expect(gc.evicted).toBeGreaterThanOrEqual(1);
    expect(gc.remainingBytes).toBeLessThanOrEqual(4096);
  });

  it('refuses bad arguments, naming them', async () => {
    await expect(clip('cache', 'gc', '--cache-dir', join(tmp, 'c3'), '--all', '--max-size', '1GiB')).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(clip('cache', 'gc', '--cache-dir', join(tmp, 'c3'), '--max-size', 'lots')).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('lots') });
  });

  it('--cache-max-size caps what a reading command leaves, evicting as it goes, and bytes stay right', async () => {
    const cacheDir = join(tmp, 'c4');
    const out = (await clip('cat', index, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir, '--cache-max-size', '64KiB')).stdout;
    expect(out.equals(LIB)).toBe(true);
    const s = await stats(cacheDir);
    expect(s.evictions).toBeGreaterThan(0);
    expect(s.evictedBytes).toBeGreaterThan(0);
  });

  it('--read-timeout and --cache-max-size are checked before any work', async () => {
    expect(storageSettingsOf({ readTimeout: '1.5s', cacheMaxSize: '2MiB', remoteCache: 'redis://h:1' })).toEqual({
      readTimeoutMs: 1500, cacheMaxBytes: 2 * 2 ** 20, remoteCache: 'redis://h:1',
    });
    await expect(clip('cat', index, '/etc/hostname', '--cache-dir', join(tmp, 'c5'), '--read-timeout', 'soon')).rejects.toMatchObject({ code: 'EINVAL', object: 'soon' });
    await expect(clip('extract', index, join(tmp, 'x'), '--cache-dir', join(tmp, 'c5'), '--cache-max-size', 'big')).rejects.toMatchObject({ code: 'EINVAL' });
    expect((await clip('cat', index, '/etc/hostname', '--cache-dir', join(tmp, 'c5'), '--read-timeout', '5s')).stdout.toString()).toBe('clip-basic-2\n');
  });
});
