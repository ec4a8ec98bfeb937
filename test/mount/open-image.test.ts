/** The IMAGE|INDEX argument: index files as they are, image references through the index cache. */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { indexFileKind } from '../../src/mount/index-file.js';
import { openImageArg } from '../../src/mount/open-image.js';
import type { IndexProgress } from '../../src/storage/indexer.js';
import { openImage, RegistryPusher, type RegistryRepository } from '../../src/oci/index.js';
import { publishIndex } from '../../src/storage/index-artifact.js';
import { resolveIndex } from '../../src/storage/index-resolver.js';
import { blobGets, startFaultProxy } from '../support/fault-proxy.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { startRegistry } from '../support/registry.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-image-arg-'));
});
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

describe('openImageArg', () => {
  it('indexes an image reference once, then answers from the cached index', async () => {
    const fx = await fixture('overlay');
    const cacheDir = join(tmp, 'cache');
    const events: IndexProgress[] = [];
    const first = await openImageArg(fx.ref, { cacheDir, onProgress: (e) => events.push(e) });
    await first.close();
    expect(first.origin).toBe('indexed');
    expect(events[0]?.kind).toBe('start');
    const second = await openImageArg(fx.ref, { cacheDir, onProgress: (e) => events.push(e) });
    await second.close();
    expect(second.origin).toBe('cache');
    expect(second.indexFile).toBe(first.indexFile);
    expect(first.indexFile).toMatch(/\/indexes\/[0-9a-f]{64}\.clip$/);
    expect(second.index.buffer.equals(first.index.buffer)).toBe(true);
    expect(events.filter((e) => e.kind === 'start')).toHaveLength(1);
    const [cached] = await readdir(join(cacheDir, 'indexes'));
    // An index file is loaded as it is; its blobs are reached through the location it records, lazily.
    const byFile = await openImageArg(join(cacheDir, 'indexes', cached!), { cacheDir: join(tmp, 'other') });
    expect(byFile.origin).toBe('file');
    expect(byFile.blobs.location).toBe(`oci:${fx.layoutDir}`);
    expect(byFile.layers.map((l) => l.diffId)).toEqual(first.index.layers.map((l) => l.diffId));
    await byFile.close();
  });

  it('tells an index file from another file and from a reference', async () => {
    const other = join(tmp, 'notes.txt');
    await writeFile(other, 'not an index');
    expect(await indexFileKind(other)).toBe('other-file');
    expect(await indexFileKind(join(tmp, 'absent'))).toBe('none');
    expect(await indexFileKind(tmp)).toBe('none');
    await expect(openImageArg(other, { cacheDir: tmp })).rejects.toMatchObject({ code: 'ECORRUPT', object: other });
    await expect(openImageArg(join(tmp, 'missing.clip'), { cacheDir: tmp })).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('says "did you mean oci:DIR" for a layout directory named bare, and that oci:DIR does not exist', async () => {
    const fx = await fixture('basic');
    await expect(openImageArg(fx.layoutDir, { cacheDir: tmp })).rejects.toMatchObject({
      code: 'EINVAL', message: `${fx.layoutDir}: is an OCI image layout directory: did you mean oci:${fx.layoutDir}?`,
    });
    await expect(openImageArg(`oci:${join(tmp, 'nowhere')}`, { cacheDir: tmp })).rejects.toMatchObject({ code: 'ENOTFOUND', message: `${join(tmp, 'nowhere')}: no such directory` });
  });

  it('refuses a FIFO at once instead of waiting for a writer that never comes', async () => {
    const fifo = join(tmp, 'index.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(await indexFileKind(fifo)).toBe('special');
    await expect(openImageArg(fifo, { cacheDir: tmp })).rejects.toMatchObject({ code: 'EINVAL', object: fifo, message: expect.stringMatching(/not a regular file/) });
    await expect(openImageArg('/dev/zero', { cacheDir: tmp })).rejects.toMatchObject({ code: 'EINVAL', object: '/dev/zero' });
  }, 30_000);
});

describe('openImageArg on a registry image', () => {
  it('deferIndexStore: an image whose index is published opens before the index\'s cache copy is written; indexStored sets indexFile to it', async () => {
    const registry = await startRegistry();
    try {
      const ref = await pushFixture('basic', registry.host);
      const src = openImage(ref) as RegistryRepository;
      try {
        const image = await src.resolve();
        const made = await resolveIndex(src, image, { cacheDir: join(tmp, 'publisher'), discover: false });
        await publishIndex(src, new RegistryPusher(src), image, made.bytes);
      } finally {
        await src.close?.();
      }
      const cacheDir = join(tmp, 'cache-deferred');
      const opened = await openImageArg(ref, { cacheDir, deferIndexStore: true });
      try {
        expect(opened.origin).toBe('registry');
        expect(opened.indexFile).toBeUndefined();
        await opened.indexStored;
        expect(opened.indexFile).toMatch(/\/indexes\/[0-9a-f]{64}\.clip$/);
        expect((await readFile(opened.indexFile!)).equals(opened.index.buffer)).toBe(true);
      } finally {
        await opened.close();
      }
      // Without it the copy is written before the image is opened.
      const plain = await openImageArg(ref, { cacheDir: join(tmp, 'cache-plain') });
      await plain.close();
      expect(plain.origin).toBe('registry');
      expect(plain.indexStored).toBeUndefined();
      expect((await readFile(plain.indexFile!)).equals(plain.index.buffer)).toBe(true);
    } finally {
      await registry.stop();
    }
  });

  it('asks for the image\'s referrers as soon as the manifest is known, while its config is still on its way', async () => {
    const registry = await startRegistry();
    const proxy = await startFaultProxy(registry.host);
    let release = (): void => undefined;
    try {
      const ref = await pushFixture('basic', proxy.host);
      const direct = openImage(ref);
      const config = (await direct.resolve()).configDescriptor.digest;
      await direct.close?.();
      proxy.inject({ kind: 'hold', until: new Promise<void>((r) => (release = r)), match: blobGets(config), times: 100 });
      // Headers waited for longer than the wait below, so that no retry of the held GET comes first.
      const opened = openImageArg(ref, { cacheDir: join(tmp, 'cache-ahead'), mayIndex: false, registry: { timeouts: { headersMs: 120_000 } } });
      opened.catch(() => undefined);
      await vi.waitFor(() => expect(proxy.count((r) => r.path.includes('/referrers/'))).toBe(1), { timeout: 20_000, interval: 20 });
      release();
      // Nothing is published for it: the lookup (that listing) finds no index, and this caller may not make one.
      await expect(opened).rejects.toMatchObject({ code: 'ENOINDEX', object: ref });
      expect(proxy.count((r) => r.path.includes('/referrers/'))).toBe(1);
    } finally {
      release();
      await proxy.stop();
      await registry.stop();
    }
  });
});
