/**
 * The fleet scenario against a real registry (behind the fault-injecting proxy) and a real Redis:
 * A reads from the registry and fills Redis; B (own cache dir, registry unreachable) reads the same
 * bytes from Redis alone; C (own cache dir, Redis stopped) reads them from the registry.
 */
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBlobStore } from '../../src/oci/index.js';
import { RegistryPusher } from '../../src/oci/push.js';
import type { RegistryRepository } from '../../src/oci/registry-source.js';
import { CheckpointSource, layerFromScan, type ResumableLayer } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { blobGets, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { freePort, startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { makeGzipLayout, tempDir, type GzipLayout } from './helpers.js';

const CHUNK = 64 * 1024;
const REPO = 'test/storage-fleet';

describe('fleet: registry, Redis and three cache directories', () => {
  let root: string;
  let made: GzipLayout;
  let layer: ResumableLayer;
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let redis: RedisServer;
  const cleanup: (() => Promise<unknown>)[] = [];
  // Ranges as `cat` of three files would read them.
  let ranges: [number, number][];

  beforeAll(async () => {
    root = await tempDir();
    made = await makeGzipLayout(root, { files: 12, bytesEach: 200_000, chunkSize: CHUNK, span: 256 * 1024 });
    layer = layerFromScan(made.scan);
    registry = await startRegistry();
    const repo = openBlobStore(`${registry.host}/${REPO}`) as RegistryRepository;
    const gz = `${root}/layer.tar.gz`;
    await new RegistryPusher(repo).pushBlob({ digest: layer.digest, size: layer.compressedSize }, (s, e) => createReadStream(gz, { start: s, end: e - 1 }));
    proxy = await startFaultProxy(registry.host);
    redis = await startRedis();
    const files = made.scan.entries.filter((e) => e.type === 'file');
    ranges = [files[1]!, files[6]!, files[10]!].map((e) => [e.dataOffset, e.size]);
  });
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
    await proxy?.stop();
    await registry?.stop();
    await redis?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function node(registryHost: string): Promise<Storage> {
    const dir = await tempDir();
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir, metrics });
    // Deadlines a stalled test process cannot miss (300 ms did under load: B then needed the source).
    const remote = await RedisChunkCache.connect({ url: redis.url, metrics, commandTimeoutMs: 2000, connectTimeoutMs: 10_000 });
    const storage = new Storage({ disk, remote, metrics, source: new CheckpointSource(openBlobStore(`${registryHost}/${REPO}`)), readTimeoutMs: 20_000 });
    cleanup.push(async () => {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    });
    return storage;
  }

  const want = (off: number, len: number): Buffer => made.tar.subarray(off, off + len);

  it('A reads from the registry by range, rejects a flipped byte, and publishes to Redis', async () => {
    const a = await node(proxy.host);
    // Flip a byte that lands in bytes the first read needs (random data deflates to stored blocks,
    // so compressed offsets track uncompressed ones), not in the discarded lead-in after the checkpoint.
    const cs = layer.chunkSize;
    const [off0, len0] = ranges[0]!;
    const s0 = Math.floor(off0 / cs) * cs;
    const e0 = Math.min(layer.uncompressedSize, Math.ceil((off0 + len0) / cs) * cs);
    const r0 = layer.compressedRange(s0, e0);
    proxy.inject({ kind: 'flip', offset: s0 - r0.checkpoint.out + Math.floor((e0 - s0) / 2), match: blobGets(layer.digest) });
    for (const [off, len] of ranges) expect((await a.read(layer, off, len)).equals(want(off, len))).toBe(true);
    expect(await a.flush(5000)).toBe(0);
    const snap = await a.metrics.snapshot();
    expect(snap['verifyFailures.source']).toBe(1);
    expect(snap['publish.stored']).toBeGreaterThan(0);
    expect(proxy.count(blobGets(layer.digest))).toBeGreaterThanOrEqual(ranges.length);
    // Range reads, not the layer.
    expect(snap['bytes.source']).toBeLessThan(made.tar.length);
    expect(proxy.requests.filter(blobGets(layer.digest)).every((r) => r.range !== undefined)).toBe(true);
  });

  it('B, with the registry unreachable, reads the same bytes from Redis alone', async () => {
    const b = await node(`127.0.0.1:${await freePort()}`);
    for (const [off, len] of ranges) expect((await b.read(layer, off, len)).equals(want(off, len))).toBe(true);
    const snap = await b.metrics.snapshot();
    expect(snap['requests.source']).toBe(0);
    expect(snap['hits.remote']).toBeGreaterThan(0);
  });

  it('C, with Redis stopped, reads them from the registry without a failure', async () => {
    const c = await node(proxy.host);
    await redis.stop();
    const before = proxy.count(blobGets(layer.digest));
    const [first, ...rest] = ranges;
    expect((await c.read(layer, first![0], first![1])).equals(want(first![0], first![1]))).toBe(true);
    // One burst of failed GETs (those in flight together), then Redis is skipped.
    const burst = (await c.metrics.snapshot())['errors.remote']!;
    expect(burst).toBeGreaterThanOrEqual(1);
    for (const [off, len] of rest) expect((await c.read(layer, off, len)).equals(want(off, len))).toBe(true);
    expect(proxy.count(blobGets(layer.digest))).toBeGreaterThan(before);
    expect((await c.metrics.snapshot())['errors.remote']).toBe(burst);
    expect(c.remote!.available).toBe(false);
  });
});
