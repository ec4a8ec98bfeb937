import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { RedisChunkCache, type RemoteCacheOptions } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { chunkCount } from '../../src/storage/types.js';
import { freePort, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '../support/redis.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 64 * 1024;

describe('the shared Redis cache', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;
  let redis: RedisServer;
  const cleanup: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 6, bytesEach: 150_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
    await redis?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** A process's view: its own cache dir and metrics, the shared Redis at `url`, the given source. */
  async function node(url: string, source: ProbeSource, remote: Partial<RemoteCacheOptions> = {}): Promise<Storage> {
    const dir = await tempDir();
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir, metrics });
    // A command deadline a stalled test process cannot miss (300 ms did, under load: a read then
    // went to the source, and a test of Redis alone failed); a paused Redis costs its one read 2 s,
    // no server at all the connect 3 s.
    const cache = await RedisChunkCache.connect({ url, metrics, commandTimeoutMs: 2000, connectTimeoutMs: 3000, probeIntervalMs: 100, ...remote });
    cleanup.push(async () => {
      await cache.close();
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    });
    return new Storage({ disk, remote: cache, source, metrics, readTimeoutMs: 10_000, retryBackoffMs: 10 });
  }

  it('fleet: A fills Redis from the source; B, with its own cache dir and no source, reads every byte from Redis', async () => {
    const a = await node(redis.url, new ProbeSource([layer]));
    expect((await a.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    expect(await a.flush(5000)).toBe(0);
    const n = chunkCount(layer.record);
    expect((await a.metrics.snapshot())['publish.stored']).toBe(n);

    const deadSource = new ProbeSource([layer]);
    deadSource.mode = 'down';
    const b = await node(redis.url, deadSource);
    for (const [off, len] of [
      [100, 10],
      [CHUNK * 2 - 5, CHUNK + 10],
      [0, bytes.length],
    ] as const) {
      expect((await b.read(layer.record, off, len)).equals(bytes.subarray(off, off + len))).toBe(true);
    }
    expect(deadSource.calls).toEqual([]);
    const snap = await b.metrics.snapshot();
    expect(snap['hits.remote']).toBe(n);
    expect(snap['verifyFailures.remote']).toBe(0);

    // Publishing again finds every chunk there already.
    const c = await node(redis.url, new ProbeSource([layer]), { prefix: 'clip:chunk:' });
    await c.read(layer.record, 0, bytes.length);
    await c.flush(5000);
    expect((await c.metrics.snapshot())['publish.stored'] ?? 0).toBe(0);
  });

  it('never serves flipped bytes from Redis: counts them, reads the source, and repairs the key', async () => {
    const prefix = 'flip:';
    const a = await node(redis.url, new ProbeSource([layer]), { prefix });
    await a.read(layer.record, 0, 3 * CHUNK);
    await a.flush(5000);
    const direct = new Redis(redis.port, '127.0.0.1');
    cleanup.push(async () => direct.quit());
    const key = prefix + layer.record.chunkDigest(1).toString('hex');
    await direct.setrange(key, 100, 'XX');

    const source = new ProbeSource([layer]);
    const b = await node(redis.url, source, { prefix });
    expect((await b.read(layer.record, 0, 3 * CHUNK)).equals(bytes.subarray(0, 3 * CHUNK))).toBe(true);
    expect(source.calls).toEqual([[CHUNK, 2 * CHUNK]]);
    const snap = await b.metrics.snapshot();
    expect(snap['verifyFailures.remote']).toBe(1);
    expect(snap['hits.remote']).toBe(2);
    await b.flush(5000);
    const repaired = await direct.getBuffer(key);
    expect(createHash('sha256').update(repaired!).digest().equals(layer.record.chunkDigest(1))).toBe(true);
  });

  it('a dead Redis costs one failure, then reads flow from the source until a probe finds it back', async () => {
    const own = await startRedis();
    cleanup.push(() => own.stop());
    const source = new ProbeSource([layer]);
    const s = await node(own.url, source);
    expect(s.remote!.available).toBe(true);
    own.pause(); // connected, but nothing answers: every call would hang without its deadline
    for (let k = 0; k < 4; k++) {
      const off = k * 2 * CHUNK;
      expect((await s.read(layer.record, off, CHUNK)).equals(bytes.subarray(off, off + CHUNK))).toBe(true);
    }
    let snap = await s.metrics.snapshot();
    expect(snap['errors.remote']).toBe(1);
    expect(snap.breakerOpen).toBe(1);
    expect(s.remote!.available).toBe(false);

    own.resume();
    const until = Date.now() + 10_000;
    while (!s.remote!.available && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(s.remote!.available).toBe(true);
    snap = await s.metrics.snapshot();
    expect(snap.breakerOpen).toBe(0);

    await own.stop();
    expect((await s.read(layer.record, CHUNK, 10)).equals(bytes.subarray(CHUNK, CHUNK + 10))).toBe(true);
    expect(s.remote!.available).toBe(false);
  });

  it('starts with the breaker open when no server listens, and never delays reads', async () => {
    const port = await freePort();
    const source = new ProbeSource([layer]);
    const s = await node(`redis://127.0.0.1:${port}`, source);
    expect(s.remote!.available).toBe(false);
    expect((await s.read(layer.record, 0, 1000)).equals(bytes.subarray(0, 1000))).toBe(true);
    expect((await s.metrics.snapshot())['requests.remote']).toBe(0);
  });

  it('says once, and why, when no server listens: refused, not slow', async () => {
    const port = await freePort();
    const warnings: { msg: string; err?: string }[] = [];
    const logger = pino({ level: 'warn' }, new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) warnings.push(JSON.parse(l) as { msg: string; err?: string });
        done();
      },
    }));
    const remote = await RedisChunkCache.connect({ url: `redis://:secret@127.0.0.1:${port}`, logger });
    await remote.close();
    expect(warnings).toEqual([expect.objectContaining({ msg: 'remote cache unreachable: reading from the other tiers', err: expect.stringContaining('ECONNREFUSED'), remote: `redis://***@127.0.0.1:${port}` })]);
  });

  it('bounds the publish queue: what does not fit is dropped and counted', async () => {
    const metrics = new StorageMetrics();
    const cache = await RedisChunkCache.connect({ url: redis.url, metrics, prefix: 'bound:', maxQueueChunks: 2, publishConcurrency: 1 });
    cleanup.push(() => cache.close());
    let accepted = 0;
    for (let i = 0; i < chunkCount(layer.record); i++) {
      const data = bytes.subarray(i * CHUNK, (i + 1) * CHUNK);
      if (cache.publish(layer.record.chunkDigest(i), Buffer.from(data))) accepted++;
    }
    expect(await cache.flush(5000)).toBe(0);
    const snap = await metrics.snapshot();
    expect(snap['publish.dropped']).toBe(chunkCount(layer.record) - accepted);
    expect(snap['publish.dropped']).toBeGreaterThan(0);
    expect(snap['publish.stored']).toBe(accepted);
  });
});

describe('the shared cache on a Redis Cluster', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;
  let cluster: RedisCluster;
  const cleanup: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 4, bytesEach: 150_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
    cluster = await startRedisCluster();
  });
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
    await cluster?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('round trip: chunks spread over the masters come back byte-exact', async () => {
    const make = async (source: ProbeSource): Promise<Storage> => {
      const dir = await tempDir();
      const metrics = new StorageMetrics();
      const disk = await DiskCache.open({ dir, metrics });
      const cache = await RedisChunkCache.connect({ url: cluster.url, metrics, connectTimeoutMs: 10_000, commandTimeoutMs: 3000 });
      cleanup.push(async () => {
        await cache.close();
        await disk.close();
        await rm(dir, { recursive: true, force: true });
      });
      expect(cache.available).toBe(true);
      return new Storage({ disk, remote: cache, source, metrics });
    };
    const a = await make(new ProbeSource([layer]));
    await a.read(layer.record, 0, bytes.length);
    expect(await a.flush(5000)).toBe(0);

    const down = new ProbeSource([layer]);
    down.mode = 'down';
    const b = await make(down);
    expect((await b.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    expect(down.calls).toEqual([]);
    expect((await b.metrics.snapshot())['hits.remote']).toBe(chunkCount(layer.record));

    // The keys really live on more than one master.
    const counts = await Promise.all(
      cluster.nodes.map(async ({ port }) => {
        const r = new Redis(port, '127.0.0.1');
        const n = await r.dbsize();
        await r.quit();
        return n;
      }),
    );
    expect(counts.filter((n) => n > 0).length).toBeGreaterThan(1);
  });
});
