/**
 * Per-layer reuse: image B shares A's two base layers. Once A is indexed, indexing B reads only
 * B's own layer, whether the base scans come from this cache directory or (a fresh node) from the
 * shared cache; and the index equals the one made by reading every layer.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
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
import { clip } from '../cli/program.js';

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

  it('clip cache gc weighs kept scans like layer files: least recently used first, down to --max-size; --all removes them; other formats and dead temporaries always go', async () => {
    const node = join(tmp, 'node-gc');
    const scansDir = join(node, 'scans');
    await index('b', { cacheDir: node }); // three scans: base, runtime, B's own
    const list = async (): Promise<string[]> => (await readdir(scansDir)).sort();
    const kept = await list();
    expect(kept).toHaveLength(3);
    // All three last used a day ago; then image A is indexed, reusing (so touching) the two base scans.
    const dayAgo = new Date(Date.now() - 86_400_000);
    for (const f of kept) await utimes(join(scansDir, f), dayAgo, dayAgo);
    expect((await index('a', { cacheDir: node })).read).toEqual([]);
    const ages = await Promise.all(kept.map(async (f) => ({ f, st: await stat(join(scansDir, f)) })));
    const stale = ages.filter((x) => x.st.atimeMs < Date.now() - 3_600_000).map((x) => x.f);
    expect(stale).toHaveLength(1); // B's own scan: not used since
    // Leftovers gc always removes: a scan of an older format (never read again), a temporary of a
    // writer that died; a temporary being written now stays.
    const hex = kept[0]!.slice(0, 64);
    const oldFormat = `${hex}-s2097152-c1048576-b524288-scan-v0.scan`;
    const deadTmp = `${kept[0]}.0123456789ab.tmp`;
    const liveTmp = `${kept[1]}.ba9876543210.tmp`;
    for (const f of [oldFormat, deadTmp, liveTmp]) await writeFile(join(scansDir, f), 'x'.repeat(5000));
    await utimes(join(scansDir, deadTmp), dayAgo, dayAgo);

    const plain = JSON.parse((await clip('cache', 'gc', '--cache-dir', node, '--json')).stdout.toString()) as Record<string, number>;
    expect(plain).toMatchObject({ evicted: 0, scansEvicted: 2 });
    expect(await list()).toEqual([...kept, liveTmp].sort());

    // A cap that holds all but one scan: the least recently used one goes, B's own.
    const bytes = async (f: string): Promise<number> => (await stat(join(scansDir, f))).blocks * 512;
    const total = (await Promise.all(kept.map(bytes))).reduce((n, b) => n + b, 0);
    const text = (await clip('cache', 'gc', '--cache-dir', node, '--max-size', String(total - 1))).stdout.toString();
    expect(text).toMatch(/evicted 0 layers and 1 layer scan \(/);
    expect(await list()).toEqual(kept.filter((f) => f !== stale[0]).concat(liveTmp).sort());
    // B now reads its own layer again, and only that one.
    const again = await index('b', { cacheDir: node });
    expect(again.read).toEqual([b.layers[2]!.digest]);

    const all = JSON.parse((await clip('cache', 'gc', '--cache-dir', node, '--all', '--json')).stdout.toString()) as Record<string, number>;
    expect(all).toMatchObject({ scansEvicted: 3, remainingBytes: 0 });
    expect(await list()).toEqual([liveTmp]);
    expect((await index('a', { cacheDir: node })).read).toHaveLength(2);
  });
});
