/**
 * Per-layer reuse: image B shares A's two base layers. Once A is indexed, indexing B reads only
 * B's own layer, whether the base scans come from this cache directory or (a fresh node) from the
 * shared cache; and the index equals the one made by reading every layer.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { openImage, pushLayout } from '../../src/oci/index.js';
import { indexImage } from '../../src/storage/indexer.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { LayoutWriter, writeImage, type TestImage } from '../oci/images.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

let tmp: string;
let registry: TestRegistry;
let proxy: FaultProxy;
let redis: RedisServer;
let a: TestImage;
let b: TestImage;

beforeAll(async () => {
  [tmp, registry, redis] = await Promise.all([mkdtemp(join(tmpdir(), 'clip-scans-')), startRegistry(), startRedis()]);
  proxy = await startFaultProxy(registry.host);
  const w = new LayoutWriter(join(tmp, 'layout'));
  const base = { 'usr/lib/base.bin': randomBytes(300_000), 'etc/os-release': 'NAME=base\n' };
  const runtime = { 'usr/lib/runtime.bin': randomBytes(200_000) };
  a = await writeImage(w, { layers: [base, runtime] });
  b = await writeImage(w, { layers: [base, runtime, { 'app/main': 'B only\n' }] });
  w.tag(a.manifest, 'a');
  w.tag(b.manifest, 'b');
  await w.save();
  for (const t of ['a', 'b']) await pushLayout(join(tmp, 'layout'), t, `${registry.host}/shared/app:${t}`);
});
afterAll(async () => {
  await closeScanPool();
  await proxy?.stop();
  await Promise.all([registry?.stop(), redis?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

/** Index `tag` through the proxy; returns the index bytes and which layer blobs were downloaded. */
async function index(tag: string, opts: { cacheDir: string; remote?: RedisChunkCache; reuseScans?: boolean }): Promise<{ bytes: Buffer; read: string[] }> {
  proxy.requests.length = 0;
  const source = openImage(`${proxy.host}/shared/app:${tag}`);
  try {
    const made = await indexImage(source, { cacheDir: opts.cacheDir, ...(opts.remote ? { remote: opts.remote } : {}), ...(opts.reuseScans === false ? { reuseScans: false } : {}) });
    const layerDigests = new Set(made.image.layers.map((l) => l.descriptor.digest));
    const read = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).map((r) => r.path.split('/blobs/')[1]!).filter((d) => layerDigests.has(d));
    return { bytes: made.bytes, read };
  } finally {
    await source.close?.();
  }
}

describe('layer scans reused across images', () => {
  it('indexing B after A reads only B\'s own layer, here and on a node that shares only the cache; the index is the same', async () => {
    const remote = await RedisChunkCache.connect({ url: redis.url });
    try {
      const nodeA = join(tmp, 'node-a');
      expect((await index('a', { cacheDir: nodeA, remote })).read.sort()).toEqual(a.layers.map((l) => l.digest).sort());
      expect((await readdir(join(nodeA, 'scans'))).filter((n) => n.endsWith('.scan'))).toHaveLength(2);

      // The same node: B's base layers come from its own scans.
      const here = await index('b', { cacheDir: nodeA });
      expect(here.read).toEqual([b.layers[2]!.digest]);
      // Another node, empty cache, same Redis: from the shared cache.
      const there = await index('b', { cacheDir: join(tmp, 'node-b'), remote });
      expect(there.read).toEqual([b.layers[2]!.digest]);
      // Reading every layer gives the same index.
      const full = await index('b', { cacheDir: join(tmp, 'node-c'), reuseScans: false });
      expect(full.read.sort()).toEqual(b.layers.map((l) => l.digest).sort());
      expect(here.bytes.equals(full.bytes)).toBe(true);
      expect(there.bytes.equals(full.bytes)).toBe(true);
    } finally {
      await remote.close();
    }
  });

  it('a stored scan that is damaged or names another layer is not used: the layer is read, and the result is right', async () => {
    const node = join(tmp, 'node-d');
    await index('a', { cacheDir: node });
    const files = (await readdir(join(node, 'scans'))).filter((n) => n.endsWith('.scan')).sort();
    await writeFile(join(node, 'scans', files[0]!), 'not a scan');
    const again = await index('a', { cacheDir: node });
    expect(again.read).toHaveLength(1);
    const full = await index('a', { cacheDir: join(tmp, 'node-e'), reuseScans: false });
    expect(again.bytes.equals(full.bytes)).toBe(true);
  });
});
