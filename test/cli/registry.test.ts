/**
 * The commands against a real registry (docker-registry behind the counting fault proxy): every
 * fixture indexed from the registry; `clip cat` of a small file deep in the 100 MB+ layer fetches
 * about one span, not the layer; an index file serves ls/stat, and cat from the disk cache, with
 * the registry stopped.
 */
import { readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_SPAN } from '../../src/archive/scan.js';
import { ImageIndex } from '../../src/index/reader.js';
import { LayoutSource } from '../../src/oci/layout.js';
import { indexImage } from '../../src/storage/indexer.js';
import { startFaultProxy, type FaultProxy, type ProxiedRequest } from '../support/fault-proxy.js';
import { BIG_PATH } from '../support/fixtures/images/big.js';
import { fixture, pushFixture, type FixtureName } from '../support/fixtures/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { skipUnlessRoot } from '../support/env.js';
import { snapshotTree, umociUnpack } from '../support/tools.js';
import { diffTrees } from '../index/tree-compare.js';
import { clip, clipProcess } from './program.js';

/** Compressed bytes a blob GET asked for: its Range, or the whole blob without one. */
function requestedBytes(r: ProxiedRequest, blobSize: number): number {
  if (!r.range) return blobSize;
  const m = /^bytes=(\d+)-(\d*)$/.exec(r.range);
  if (!m) throw new Error(`unexpected range ${r.range}`);
  return (m[2] ? Number(m[2]) + 1 : blobSize) - Number(m[1]);
}

const SMALL: FixtureName[] = ['basic', 'overlay', 'longnames', 'multiarch', 'docker-multiarch', 'docker', 'zstd', 'uncompressed', 'umoci'];

describe('commands against a real registry', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let tmp: string;
  const refs = new Map<FixtureName, string>();

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-cli-registry-'));
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    for (const name of [...SMALL, 'big'] as FixtureName[]) {
      const pushed = await pushFixture(name, registry.host);
      refs.set(name, pushed.replace(registry.host, proxy.host));
    }
  }, 300_000);
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await closeScanPool();
    await rm(tmp, { recursive: true, force: true });
  });

  it.each(SMALL)('%s: indexed from the registry, the same tree as from its layout', async (name) => {
    const out = join(tmp, `${name}.clip`);
    const report = JSON.parse((await clip('index', refs.get(name)!, '-o', out, '--cache-dir', join(tmp, 'cache'), '--json')).stdout.toString()) as { manifestDigest: string; entries: number };
    const fx = await fixture(name);
    const fromLayout = (await indexImage(new LayoutSource(fx.layoutDir, fx.tag))).index;
    const fromRegistry = await ImageIndex.open(out);
    expect(report.manifestDigest).toBe(fromLayout.image.manifestDigest);
    expect(fromRegistry.image.location).toBe(`${proxy.host}/fixtures/${name}`);
    expect(report.entries).toBe(fromLayout.entryCount);
    // Same tree: identical bytes from `image.reference` on (the entry, string and layer sections).
    const tree = (i: ImageIndex): string[] => [...i.walk()].map(({ path, ino }) => `${path} ${JSON.stringify(i.getattr(ino))} ${JSON.stringify(i.dataLocation(ino) ?? null)}`);
    expect(tree(fromRegistry)).toEqual(tree(fromLayout));
  });

  it('an image reference with a cached index: one manifest request, no layer read', async () => {
    const index = await ImageIndex.open(join(tmp, 'basic.clip'));
    proxy.requests.length = 0;
    const { stdout, stderr } = await clip('ls', refs.get('basic')!, '/etc', '--cache-dir', join(tmp, 'cache'));
    expect(stdout.toString()).toMatch(/^hostname$/m);
    expect(stderr).not.toMatch(/indexing/);
    expect(proxy.requests.filter((r) => r.path.includes('/manifests/'))).toHaveLength(1);
    const layerGets = proxy.requests.filter((r) => index.layers.some((l) => r.path.endsWith(`/blobs/${l.digest}`)));
    expect(layerGets).toEqual([]);
  });

  it('cat of a small file deep in the 100 MB+ layer fetches about one span, not the layer', async () => {
    const indexFile = join(tmp, 'big.clip');
    await clip('index', refs.get('big')!, '-o', indexFile, '--cache-dir', join(tmp, 'cache'), '--no-progress');
    const index = await ImageIndex.open(indexFile);
    const layer = index.layers[0]!;
    const loc = index.dataLocation(index.resolvePath('/data/after.txt'))!;
    expect(loc.offset).toBeGreaterThan(100 * 1024 * 1024);
    proxy.requests.length = 0;
    const { stdout } = await clip('cat', indexFile, '/data/after.txt', '--cache-dir', join(tmp, 'cold-cache'));
    expect(stdout.toString()).toBe('after the big file\n');
    expect(proxy.requests.filter((r) => r.path.includes('/manifests/'))).toEqual([]);
    const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${layer.digest}`));
    const fetched = gets.reduce((n, r) => n + requestedBytes(r, layer.compressedSize), 0);
    // One span between checkpoints, the chunk being verified, and the byte before an unaligned checkpoint.
    expect(gets.length).toBe(1);
    expect(fetched).toBeLessThanOrEqual(DEFAULT_SPAN + DEFAULT_CHUNK_SIZE + 1);
    expect(fetched / layer.compressedSize).toBeLessThan(0.05);
    // And the big file's first bytes, from its own checkpoint: nothing before it is fetched.
    proxy.requests.length = 0;
    const bigLoc = index.dataLocation(index.resolvePath(BIG_PATH))!;
    expect(bigLoc.size).toBeGreaterThan(100 * 1024 * 1024);
    const before = await clip('cat', indexFile, '/data/before.txt', '--cache-dir', join(tmp, 'cold-cache-2'));
    expect(before.stdout.toString()).toBe('before the big file\n');
    const first = proxy.requests.filter((r) => r.path.includes(`/blobs/${layer.digest}`));
    expect(first.reduce((n, r) => n + requestedBytes(r, layer.compressedSize), 0)).toBeLessThanOrEqual(DEFAULT_SPAN + DEFAULT_CHUNK_SIZE + 1);
  }, 180_000);

  it.skipIf(skipUnlessRoot())('extract from the registry equals umoci unpack of the layout', async () => {
    const fx = await fixture('basic');
    const target = join(tmp, 'basic-rootfs');
    await clip('extract', refs.get('basic')!, target, '--cache-dir', join(tmp, 'extract-cache'), '--no-progress');
    const expected = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag!, join(tmp, 'basic-umoci')));
    expect(diffTrees(expected, await snapshotTree(target), { contents: true })).toEqual([]);
  });

  it('cat with --remote-cache: what one machine read, another reads from Redis with the registry unreachable', async () => {
    let redis: RedisServer | undefined;
    try {
      redis = await startRedis();
      const indexFile = join(tmp, 'zstd.clip');
      const index = await ImageIndex.open(indexFile);
      const file = [...index.walk()].find(({ ino }) => (index.dataLocation(ino)?.size ?? 0) > 100_000)!;
      const a = await clip('cat', indexFile, file.path, '--cache-dir', join(tmp, 'machine-a'), '--remote-cache', redis.url);
      expect(a.stdout.length).toBe(index.dataLocation(file.ino)!.size);
      proxy.requests.length = 0;
      proxy.inject({ kind: 'status', status: 404, times: 1000 }); // the registry "forgets" everything
      const b = await clip('cat', indexFile, file.path, '--cache-dir', join(tmp, 'machine-b'), '--remote-cache', redis.url);
      expect(b.stdout.equals(a.stdout)).toBe(true);
      expect(proxy.requests).toEqual([]);
    } finally {
      proxy.clearFaults();
      await redis?.stop();
    }
  });

  it('--read-timeout: cat against a registry that stalls fails with ETIMEOUT at the deadline, never hangs', async () => {
    const indexFile = join(tmp, 'stall.clip');
    await clip('index', refs.get('basic')!, '-o', indexFile, '--cache-dir', join(tmp, 'cache'), '--no-progress');
    const index = await ImageIndex.open(indexFile);
    const digests = index.layers.map((l) => l.digest);
    try {
      proxy.inject({ kind: 'stall', match: (r) => r.method === 'GET' && digests.some((d) => r.path.includes(`/blobs/${d}`)), times: 1000 });
      const started = Date.now();
      await expect(clip('cat', indexFile, '/usr/lib/libdemo.so.1', '--cache-dir', join(tmp, 'stall-cache'), '--read-timeout', '1500ms')).rejects.toMatchObject({ code: 'ETIMEOUT' });
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(1500); // the deadline given, not the 30 s default
      expect(took).toBeLessThan(25_000);
    } finally {
      proxy.clearFaults();
    }
  });

  it.each<[string, { kind: 'stall'; afterBytes?: number }]>([
    ['a body that goes silent', { kind: 'stall', afterBytes: 10 }],
    ['a request never answered', { kind: 'stall' }],
  ])('--read-timeout: %s on the first attempt is given up and retried within the deadline', async (_, fault) => {
    const indexFile = join(tmp, 'stall.clip');
    await clip('index', refs.get('basic')!, '-o', indexFile, '--cache-dir', join(tmp, 'cache'), '--no-progress');
    const index = await ImageIndex.open(indexFile);
    const file = index.dataLocation(index.resolvePath('/usr/lib/libdemo.so.1'))!;
    const blob = (r: ProxiedRequest): boolean => r.method === 'GET' && r.path.endsWith(`/blobs/${index.layers[file.layer]!.digest}`);
    try {
      proxy.requests.length = 0;
      proxy.inject({ ...fault, match: blob, times: 1 });
      // Within the deadline: past it the read fails with ETIMEOUT (the test above), so the whole file
      // printed is the proof; a wall-clock bound around the command also timed its setup, under load.
      const { stdout } = await clip('cat', indexFile, '/usr/lib/libdemo.so.1', '--cache-dir', join(tmp, `stall-retry-${fault.afterBytes ?? 'headers'}`), '--read-timeout', '6s');
      expect(stdout.length).toBe(file.size);
      const gets = proxy.requests.filter(blob);
      expect(gets.length).toBe(2);
      // A silent body is resumed from where it stopped; an unanswered request is sent again.
      const from = (r: ProxiedRequest): number => Number(/^bytes=(\d+)-/.exec(r.range ?? 'bytes=0-')![1]);
      expect(from(gets[1]!) - from(gets[0]!)).toBe(fault.afterBytes ?? 0);
    } finally {
      proxy.clearFaults();
    }
  });

  it('an index file needs no registry: ls and stat offline, cat from the disk cache', async () => {
    const indexFile = join(tmp, 'basic.clip');
    const cacheDir = join(tmp, 'warm-cache');
    const want = (await clip('cat', indexFile, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir)).stdout;
    expect(want.length).toBe(1_500_000);
    expect((await clip('cat', indexFile, '/etc/hostname', '--cache-dir', cacheDir)).stdout.toString()).toBe('clip-basic-2\n');
    await proxy.stop();
    await registry.stop();
    const ls = await clipProcess(['ls', indexFile, '/usr/bin', '-l', '--cache-dir', cacheDir]);
    expect(ls.stderr).toBe('');
    expect(ls.stdout.toString()).toMatch(/ su-like$/m);
    const st = await clipProcess(['stat', indexFile, '/usr/bin/ping-like', '--json', '--cache-dir', cacheDir]);
    expect(JSON.parse(st.stdout.toString())).toMatchObject({ size: 50_000, xattrs: { 'user.comment': 'needs raw sockets' } });
    const cat = await clipProcess(['cat', indexFile, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir]);
    expect(cat.stderr).toBe('');
    expect(cat.code).toBe(0);
    expect(cat.stdout.equals(want)).toBe(true);
    const host = await clipProcess(['cat', indexFile, '/etc/hostname', '--cache-dir', cacheDir]);
    expect(host.stdout.toString()).toBe('clip-basic-2\n');
    expect(await readFile(indexFile)).toBeTruthy();
  }, 120_000);
});
