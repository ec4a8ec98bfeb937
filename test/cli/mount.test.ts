/**
 * The mount command's storage flags: parsed into the mount's configuration, and --background-fetch
 * on a real mount of an image in a real registry: every layer ends up on disk while the mount is
 * idle, after which files read right with the registry gone; an unmount stops a fetch under way.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RATE_TEXT, mountConfigOf, parseRate } from '../../src/cli/commands/mount.js';
import { startMount } from '../../src/mount/serve.js';
import { seededBytes } from '../../src/oci/build/index.js';
import { DEFAULT_BACKGROUND_RATE } from '../../src/storage/index.js';
import { formatSize } from '../../src/util/size.js';
import { skipUnlessRoot } from '../support/env.js';
import { pushFixture } from '../support/fixtures/index.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

describe('clip mount options', () => {
  it('turns the storage flags into the mount configuration, checked', () => {
    expect(mountConfigOf('img', '/mnt', { cacheMaxSize: '2GiB', readTimeout: '5s', backgroundFetch: '4MiB/s', remoteCache: 'redis://h:1' })).toMatchObject({
      image: 'img', mountpoint: '/mnt', cacheMaxBytes: 2 * 2 ** 30, readTimeoutMs: 5000, backgroundFetch: { bytesPerSecond: 4 * 2 ** 20 }, remoteCache: 'redis://h:1',
    });
    // No rate given: the storage default, which the help text names.
    expect(mountConfigOf('img', '/mnt', { backgroundFetch: true }).backgroundFetch).toEqual({});
    expect(DEFAULT_RATE_TEXT).toBe(`${formatSize(DEFAULT_BACKGROUND_RATE)}/s`);
    expect(mountConfigOf('img', '/mnt', {}).backgroundFetch).toBeUndefined();
    expect(parseRate('512k')).toBe(512 * 1024);
    expect(() => parseRate('0/s')).toThrow(/positive/);
    expect(() => parseRate('fast')).toThrow(/not a size/);
    expect(() => mountConfigOf('img', '/mnt', { cacheMaxSize: 'huge' })).toThrow(/not a size/);
  });
});

/** Each describe gets a registry of its own holding the basic fixture (a test may stop it). */
function basicInRegistry(prefix: string): { registry: TestRegistry; ref: string; tmp: string } {
  const env = {} as { registry: TestRegistry; ref: string; tmp: string };
  beforeAll(async () => {
    env.tmp = await mkdtemp(join(tmpdir(), prefix));
    env.registry = await startRegistry();
    env.ref = await pushFixture('basic', env.registry.host);
  }, 120_000);
  afterAll(async () => {
    await env.registry?.stop();
    await rm(env.tmp, { recursive: true, force: true });
  });
  return env;
}

describe.skipIf(skipUnlessRoot())('clip mount --background-fetch', () => {
  const env = basicInRegistry('clip-cli-bgfetch-');

  it('completes every layer on disk while idle; then reads need no registry', async () => {
    const mnt = await mkdtemp(join(env.tmp, 'mnt-'));
    const cacheDir = join(env.tmp, 'cache-a');
    const running = await startMount({ image: env.ref, mountpoint: mnt, cacheDir, backgroundFetch: { bytesPerSecond: 1 << 30 } });
    try {
      expect(running.background).toBeDefined();
      await running.background!.done;
      const rows = await running.storage.disk.describe();
      expect(rows.length).toBe(new Set(running.image.layers.map((l) => l.diffId)).size);
      for (const r of rows) expect(r.presentChunks, r.diffId).toBe(r.totalChunks);
      const fromSource = (await running.storage.metrics.snapshot())['bytes.source'];
      await env.registry.stop();
      expect((await readFile(join(mnt, 'usr/lib/libdemo.so.1'))).equals(seededBytes('basic/lib', 1_500_000, { compressible: 0.7 }))).toBe(true);
      expect((await readFile(join(mnt, 'etc/hostname'), 'utf8'))).toBe('clip-basic-2\n');
      expect((await running.storage.metrics.snapshot())['bytes.source']).toBe(fromSource);
    } finally {
      await running.stop();
      await rm(mnt, { recursive: true, force: true });
    }
  }, 120_000);
});

describe.skipIf(skipUnlessRoot())('clip mount --background-fetch, stopped by the unmount', () => {
  const env = basicInRegistry('clip-cli-bgstop-');

  it('an unmount stops a slow fetch under way, leaving the layers incomplete', async () => {
    const mnt = await mkdtemp(join(env.tmp, 'mnt-'));
    const running = await startMount({ image: env.ref, mountpoint: mnt, cacheDir: join(env.tmp, 'cache'), backgroundFetch: { bytesPerSecond: 64 * 1024 } });
    await new Promise((r) => setTimeout(r, 300));
    const layers = new Set(running.image.layers.map((l) => l.diffId)).size;
    const started = Date.now();
    await running.stop();
    await running.background!.done; // settled by the stop
    expect(Date.now() - started).toBeLessThan(20_000); // not after the paces the rate would take
    await rm(mnt, { recursive: true, force: true });
    const { DiskCache } = await import('../../src/storage/disk-cache.js');
    const disk = await DiskCache.open({ dir: join(env.tmp, 'cache') });
    const rows = await disk.describe();
    await disk.close();
    expect(layers).toBeGreaterThan(1);
    const complete = rows.filter((r) => r.totalChunks !== undefined && r.presentChunks === r.totalChunks).length;
    expect(complete).toBeLessThan(layers);
  }, 120_000);
});
