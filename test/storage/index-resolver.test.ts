/**
 * Indexes that travel with the image, on the real docker-registry 2.8 (no referrers API: the tag
 * schema) behind a counting proxy, and a real redis-server as the shared cache: a node with an
 * empty cache goes from an image reference to the bytes of one file fetching the manifest, the
 * config, the index and one span, never a layer.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { openImage, RegistryClient, RegistryPusher, RegistryRepository, type ResolvedImage } from '../../src/oci/index.js';
import { INDEX_ARTIFACT_TYPE, publishIndex } from '../../src/storage/index-artifact.js';
import { resolveIndex } from '../../src/storage/index-resolver.js';
import { cachedIndexPath } from '../../src/storage/indexer.js';
import { listReferrers } from '../../src/oci/referrers.js';
import { BIG_PATH } from '../support/fixtures/images/big.js';
import { pushFixture } from '../support/fixtures/index.js';
import { startFaultProxy, type FaultProxy, type ProxiedRequest } from '../support/fault-proxy.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { clip, clipProcess, MAIN } from '../cli/program.js';
import { skipUnlessRoot } from '../support/env.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_SPAN } from '../../src/archive/scan.js';
import { cleanScratch, scratch } from '../mount/helpers.js';

let registry: TestRegistry;
let proxy: FaultProxy;
let redis: RedisServer;
let tmp: string;
let big: string;
let basic: string;
let bigImage: ResolvedImage;

beforeAll(async () => {
  [registry, redis, tmp] = await Promise.all([startRegistry(), startRedis(), mkdtemp(join(tmpdir(), 'clip-resolver-'))]);
  proxy = await startFaultProxy(registry.host);
  big = (await pushFixture('big', registry.host)).replace(registry.host, proxy.host);
  basic = (await pushFixture('basic', registry.host)).replace(registry.host, proxy.host);
  const src = openImage(big);
  bigImage = await src.resolve();
  await src.close?.();
});
afterAll(async () => {
  await closeScanPool();
  await proxy?.stop();
  await Promise.all([registry?.stop(), redis?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

const blobBytes = (digest: string): number => proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`)).reduce((n, r) => n + r.bytes, 0);
const wholeGets = (digest: string): ProxiedRequest[] => proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`) && r.range === undefined);

describe('an index published with its image', () => {
  it('clip index --push publishes it; a fresh node then reads one file for the index, manifest, config and one span', async () => {
    const pushed = JSON.parse((await clip('index', big, '--push', '--cache-dir', join(tmp, 'publisher'), '--json', '--no-progress')).stdout.toString()) as { published: string; indexBytes: number };
    expect(pushed.published).toMatch(/^sha256:[0-9a-f]{64}$/);
    const repo = new RegistryRepository(new RegistryClient(registry.host), 'fixtures/big');
    const listed = await listReferrers(repo, bigImage.manifestDigest, { artifactType: INDEX_ARTIFACT_TYPE });
    expect(listed.map((d) => d.digest)).toEqual([pushed.published]);
    const artifact = JSON.parse((await repo.getManifest(pushed.published)).bytes.toString()) as { layers: { digest: string; size: number }[] };
    await repo.close();

    proxy.requests.length = 0;
    const layer = bigImage.layers[0]!.descriptor;
    const got = await clipProcess(['cat', big, '/data/after.txt', '--cache-dir', join(tmp, 'fresh-node')]);
    expect(got.stderr).toBe('');
    expect(got.stdout.toString()).toBe('after the big file\n');
    // The artifact's blob once, whole; the layer never whole, and only about one span of it.
    expect(blobBytes(artifact.layers[0]!.digest)).toBe(artifact.layers[0]!.size);
    expect(wholeGets(layer.digest)).toEqual([]);
    expect(blobBytes(layer.digest)).toBeGreaterThan(0);
    expect(blobBytes(layer.digest)).toBeLessThan(4 * 1024 * 1024);
    expect(layer.size).toBeGreaterThan(80 * 1024 * 1024);
    // A second command on that node takes the index from the local cache: no referrers lookup.
    proxy.requests.length = 0;
    expect((await clipProcess(['stat', big, BIG_PATH, '--cache-dir', join(tmp, 'fresh-node'), '--json'])).stdout.toString()).toContain('"size"');
    expect(proxy.requests.filter((r) => r.path.includes('sha256-') || r.path.includes('/referrers/'))).toEqual([]);
  });

  it('deferStore: the index is ready before its local copy is written, and the copy settles with the same bytes (or with its failure, not the resolve\'s)', async () => {
    const cacheDir = join(tmp, 'deferred-node');
    const src = openImage(big);
    try {
      const got = await resolveIndex(src, bigImage, { cacheDir, deferStore: true });
      expect(got.origin).toBe('registry');
      expect(got.file).toBeUndefined();
      const file = await got.stored;
      expect(file).toBe(cachedIndexPath(cacheDir, bigImage.manifestDigest));
      expect((await readFile(file!)).equals(got.bytes)).toBe(true);
      // The next resolve takes the copy: no store left to wait for.
      const again = await resolveIndex(src, bigImage, { cacheDir, deferStore: true });
      expect(again.origin).toBe('cache');
      expect(again.stored).toBeUndefined();

      // A cache directory where the copy cannot go: without deferStore the resolve fails; with it, only `stored`.
      const blocked = join(tmp, 'blocked-node');
      await mkdir(blocked, { recursive: true });
      await writeFile(join(blocked, 'indexes'), 'not a directory');
      await expect(resolveIndex(src, bigImage, { cacheDir: blocked })).rejects.toThrow();
      const deferred = await resolveIndex(src, bigImage, { cacheDir: blocked, deferStore: true });
      expect(deferred.origin).toBe('registry');
      await expect(deferred.stored).rejects.toThrow();
    } finally {
      await src.close?.();
    }
  });

  it('--no-discover indexes here even though an index is published', async () => {
    const src = openImage(big);
    const found = await resolveIndex(src, bigImage, { cacheDir: join(tmp, 'no-discover'), discover: false });
    await src.close?.();
    expect(found.origin).toBe('indexed');
    expect(wholeGets(bigImage.layers[0]!.descriptor.digest).length).toBeGreaterThan(0);
  });

  it('an artifact that describes another image is skipped (logged), and the image is indexed here', async () => {
    const src = openImage(basic) as RegistryRepository;
    const basicImage = await src.resolve();
    // The big image's index, pushed as if it described basic.
    const bigIndex = await resolveIndex(src, bigImage, { cacheDir: join(tmp, 'publisher') });
    expect(bigIndex.origin).toBe('cache');
    await publishIndex(src, new RegistryPusher(src), basicImage, bigIndex.bytes);
    const warnings: string[] = [];
    const logger = { warn: (o: { err?: string }, msg: string) => warnings.push(`${msg}: ${o.err}`), info: () => {}, debug: () => {} } as never;
    const found = await resolveIndex(src, basicImage, { cacheDir: join(tmp, 'victim'), logger });
    await src.close();
    expect(found.origin).toBe('indexed');
    expect(found.index.image.manifestDigest).toBe(basicImage.manifestDigest);
    expect(warnings).toEqual([expect.stringMatching(/published index unusable: skipped: .*index describes another image: manifest/)]);
  });
});

describe.skipIf(skipUnlessRoot())('a fresh node mounts an image whose index is published', () => {
  it('clip mount --background fetches the manifest, config and index before it is ready, then about one span per small file', async () => {
    const pushed = JSON.parse((await clip('index', big, '--push', '--cache-dir', join(tmp, 'publisher'), '--json', '--no-progress')).stdout.toString()) as { published: string };
    const repo = new RegistryRepository(new RegistryClient(registry.host), 'fixtures/big');
    const artifact = JSON.parse((await repo.getManifest(pushed.published)).bytes.toString()) as { layers: { digest: string; size: number }[] };
    await repo.close();
    const indexBlob = artifact.layers[0]!;
    const layer = bigImage.layers[0]!.descriptor;
    const config = bigImage.configDescriptor;
    const where = await scratch('clip-published-mount');
    try {
      proxy.requests.length = 0;
      // The real CLI, as its own process; no --remote-cache: the registry is the only place to look.
      const up = await clipProcess(['mount', big, where.mnt, '--cache-dir', where.cache, '--background'], {}, { entry: MAIN, timeoutMs: 120_000 });
      expect(up.stdout.toString()).toMatch(/^clip: mounted .*fixtures\/big:latest on /);
      expect(up.code).toBe(0);
      const blobGets = (): ProxiedRequest[] => proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
      // Ready: the index blob (whole, once) and the config (resolved by the command, then by the
      // daemon it starts), and not one byte of the layer.
      const fetched = blobGets().map((r) => r.path.split('/blobs/')[1]);
      expect(new Set(fetched)).toEqual(new Set([config.digest, indexBlob.digest]));
      expect(fetched.filter((d) => d === indexBlob.digest)).toHaveLength(1);
      expect(blobBytes(indexBlob.digest)).toBe(indexBlob.size);
      expect(blobBytes(config.digest)).toBeLessThanOrEqual(2 * config.size);
      expect(blobBytes(layer.digest)).toBe(0);

      expect(await readFile(join(where.mnt, 'data/after.txt'), 'utf8')).toBe('after the big file\n');
      // One small file: one range of the layer, about a span (between checkpoints, plus the chunk
      // being verified and the byte before an unaligned checkpoint), never the layer.
      expect(wholeGets(layer.digest)).toEqual([]);
      const layerGets = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`));
      expect(layerGets).toHaveLength(1);
      expect(blobBytes(layer.digest)).toBeGreaterThan(0);
      expect(blobBytes(layer.digest)).toBeLessThanOrEqual(DEFAULT_SPAN + DEFAULT_CHUNK_SIZE + 1);
      expect(layer.size).toBeGreaterThan(20 * (DEFAULT_SPAN + DEFAULT_CHUNK_SIZE)); // the bound is far below a layer
      // And nothing more of the index: it was fetched once, before the mount was ready.
      expect(blobBytes(indexBlob.digest)).toBe(indexBlob.size);
    } finally {
      await cleanScratch(where);
    }
  }, 180_000);
});

describe('an index in the shared cache', () => {
  it('a node that indexed stores it there; another node with an empty cache takes it without the registry reading a layer', async () => {
    const src = openImage(basic);
    const image = await src.resolve();
    const first = await resolveIndex(src, image, { cacheDir: join(tmp, 'node-a'), remoteCache: redis.url, discover: false });
    expect(first.origin).toBe('indexed');
    proxy.requests.length = 0;
    const second = await resolveIndex(src, image, { cacheDir: join(tmp, 'node-b'), remoteCache: redis.url });
    await src.close?.();
    expect(second.origin).toBe('shared');
    expect(second.bytes.equals(first.bytes)).toBe(true);
    expect(proxy.requests).toEqual([]);
    // And the CLI, as a fresh process, finds it there too.
    const ls = await clipProcess(['ls', basic, '/etc', '--cache-dir', join(tmp, 'node-c'), '--remote-cache', redis.url]);
    expect(ls.stdout.toString()).toContain('hostname');
    // Resolving the image reads its config blob; no layer is read.
    expect(proxy.requests.filter((r) => r.path.includes('/blobs/')).map((r) => r.path.split('/blobs/')[1])).toEqual([image.configDescriptor.digest]);
  });

  it('a dead shared cache costs only the lookup: the index comes from the registry', async () => {
    const src = openImage(big);
    const found = await resolveIndex(src, bigImage, { cacheDir: join(tmp, 'node-d'), remoteCache: 'redis://127.0.0.1:1' });
    await src.close?.();
    expect(found.origin).toBe('registry');
  });
});
