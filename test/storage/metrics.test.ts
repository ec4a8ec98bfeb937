/**
 * What an operator sees of the read path: the Prometheus exposition has bytes, requests, hits and
 * misses per tier, verification failures, latency histograms, singleflight joins, evictions and the
 * breaker state, with values that follow what happened; debug logs name the layer and the tier of
 * each fetch decision. Against a real redis-server.
 */
import { readFile, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

/** The value of one sample line `name{labels} value` in an exposition. */
function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  if (!line) throw new Error(`no sample ${name}{${labels}} in:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics and logs of the read path', () => {
  let root: string;
  let layer: TestLayer;
  let redis: RedisServer;

  beforeAll(async () => {
    root = await tempDir('clip-metrics-');
    layer = await makeTarLayer(root, { files: 4, bytesEach: 50_000, chunkSize: 16 * 1024 });
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('counts every tier, and logs each fetch decision with layer and tier', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    const bytes = await readFile(layer.file);
    const size = layer.record.uncompressedSize;

    // A fills Redis from the source; concurrent readers of one cold range join its fetch.
    const ma = new StorageMetrics();
    const a = new Storage({
      disk: await DiskCache.open({ dir: `${root}/a`, maxBytes: 64 * 1024, metrics: ma }),
      remote: await RedisChunkCache.connect({ url: redis.url, metrics: ma }),
      source: new ProbeSource([layer]), metrics: ma, logger, statsIntervalMs: 0,
    });
    const reads = await Promise.all(Array.from({ length: 5 }, () => a.read(layer.record, 0, 40_000)));
    for (const r of reads) expect(r.equals(bytes.subarray(0, 40_000))).toBe(true);
    expect((await a.read(layer.record, 0, size)).equals(bytes)).toBe(true);
    expect((await a.read(layer.record, 0, 1000)).equals(bytes.subarray(0, 1000))).toBe(true); // a disk hit
    await a.flush(10_000);
    // Over its 64 KiB cap: evicts. A gc the writes started may still run (gc() then joins it),
    // having listed the layer file before it outgrew the cap: the second one lists it whole.
    await a.disk.gc();
    await a.disk.gc();
    const ta = await (await ma.registry()).metrics();
    await a.close();

    // B (own directory) gets everything from Redis; a corrupted value there is a verification failure.
    const mb = new StorageMetrics();
    const remote = await RedisChunkCache.connect({ url: redis.url, metrics: mb, logger });
    const key = remote.keyOf(layer.record.chunkDigest(1));
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.port, redis.host);
    await raw.set(key, Buffer.alloc(16 * 1024, 1));
    await raw.quit();
    const source = new ProbeSource([layer]);
    const b = new Storage({ disk: await DiskCache.open({ dir: `${root}/b` }), remote, source, metrics: mb, logger, statsIntervalMs: 0 });
    expect((await b.read(layer.record, 0, size)).equals(bytes)).toBe(true);
    const tb = await (await mb.registry()).metrics();
    await b.close();

    expect(sample(ta, 'clip_storage_bytes_total', 'tier="source"')).toBe(size);
    expect(sample(ta, 'clip_storage_bytes_total', 'tier="disk"')).toBeGreaterThanOrEqual(1000);
    expect(sample(ta, 'clip_storage_requests_total', 'tier="source"')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_chunk_hits_total', 'tier="disk"')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_chunk_misses_total', 'tier="disk"')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_chunk_misses_total', 'tier="remote"')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_singleflight_joins_total')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_evictions_total')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_evicted_bytes_total')).toBeGreaterThan(0);
    expect(sample(ta, 'clip_storage_remote_breaker_open')).toBe(0);
    expect(sample(ta, 'clip_storage_fetch_seconds_count', 'tier="source"')).toBeGreaterThan(0);
    expect(ta).toMatch(/^clip_storage_fetch_seconds_bucket\{le="0\.005",tier="disk"\} \d+$/m);
    expect(sample(ta, 'clip_storage_publish_total', 'result="stored"')).toBeGreaterThan(0);

    expect(sample(tb, 'clip_storage_chunk_hits_total', 'tier="remote"')).toBeGreaterThan(0);
    expect(sample(tb, 'clip_storage_bytes_total', 'tier="remote"')).toBeGreaterThan(0);
    expect(sample(tb, 'clip_storage_verify_failures_total', 'tier="remote"')).toBe(1);
    expect(sample(tb, 'clip_storage_chunk_hits_total', 'tier="source"')).toBe(1); // the corrupted chunk
    expect(sample(tb, 'clip_storage_fetch_seconds_count', 'tier="remote"')).toBeGreaterThan(0);

    const decisions = lines.filter((l) => l.level === 20 && typeof l.layer === 'string');
    for (const tier of ['disk', 'remote', 'source']) {
      expect(decisions.some((l) => l.tier === tier && l.layer === layer.record.diffId), tier).toBe(true);
    }
    expect(lines.some((l) => l.tier === 'remote' && l.msg === 'remote cache chunk failed verification' && l.layer === layer.record.diffId)).toBe(true);
  });
});
