/**
 * Storage read-path benchmark (run by hand): node --import tsx bench/storage/read-path.ts
 *   SIZE_MB=1024 (layer size), CHUNK_KB=1024, READS=20000, REDIS=1 (also time cold reads from Redis)
 *
 * Reports, against reading the same bytes straight from the local file:
 * - disk-warm random 4 KiB reads per second, and 1 MiB sequential reads per second (ratios);
 * - a cold read of a small range from the source and from Redis (latency, bytes fetched);
 * - resident memory growth while streaming the whole layer cold through the read path.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { FileLayerSource } from '../../src/storage/file-source.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { layerRecord, type LayerRecord } from '../../src/storage/types.js';
import { startRedis } from '../../test/support/redis.js';

const SIZE = Number(process.env.SIZE_MB ?? 256) * 1024 * 1024;
const CHUNK = Number(process.env.CHUNK_KB ?? 1024) * 1024;
const READS = Number(process.env.READS ?? 20_000);
const work = path.resolve('.tmp/bench-storage');

async function makeLayer(): Promise<{ file: string; record: LayerRecord }> {
  await mkdir(work, { recursive: true });
  const file = path.join(work, `layer-${SIZE}.bin`);
  const exists = await stat(file).then((s) => s.size === SIZE, () => false);
  if (!exists) {
    const out = createWriteStream(file);
    for (let done = 0; done < SIZE; done += CHUNK) {
      if (!out.write(randomBytes(Math.min(CHUNK, SIZE - done)))) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    out.end();
    await finished(out);
  }
  const fh = await open(file);
  const whole = createHash('sha256');
  const digests: Buffer[] = [];
  const buf = Buffer.alloc(CHUNK);
  for (let at = 0; at < SIZE; at += CHUNK) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, SIZE - at), at);
    whole.update(buf.subarray(0, bytesRead));
    digests.push(createHash('sha256').update(buf.subarray(0, bytesRead)).digest());
  }
  await fh.close();
  const diffId = `sha256:${whole.digest('hex')}`;
  const record = layerRecord({ diffId, digest: diffId, compression: 'none', compressedSize: SIZE, uncompressedSize: SIZE, chunkSize: CHUNK, chunkDigests: Buffer.concat(digests) });
  return { file, record };
}

function offsets(n: number, len: number, seed = 1): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return Math.floor((x / 0x7fffffff) * (SIZE - len));
  });
}

async function timeIt(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const report = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));

const { file, record } = await makeLayer();
const cacheDir = path.join(work, 'cache');
await rm(cacheDir, { recursive: true, force: true });
const metrics = new StorageMetrics();
const disk = await DiskCache.open({ dir: cacheDir, metrics });
const storage = new Storage({ disk, source: new FileLayerSource({ [record.diffId]: file }), metrics });

// Cold stream of the whole layer: memory must stay flat.
const rss0 = process.memoryUsage().rss;
let peak = rss0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
const coldSecs = await timeIt(async () => {
  for await (const _ of storage.stream(record, 0, SIZE)) void _;
});
clearInterval(sampler);
report({ bench: 'cold-stream', mb: SIZE / 2 ** 20, seconds: coldSecs, mbPerSec: SIZE / 2 ** 20 / coldSecs, rssGrowthMb: (peak - rss0) / 2 ** 20 });

// Disk-warm random 4 KiB reads, against pread of the raw file.
const raw = await open(file);
const small = offsets(READS, 4096);
const rawBuf = Buffer.alloc(4096);
const rawSmall = await timeIt(async () => {
  for (const o of small) await raw.read(rawBuf, 0, 4096, o);
});
const cacheSmall = await timeIt(async () => {
  for (const o of small) await storage.read(record, o, 4096);
});
report({ bench: 'warm-random-4k', reads: READS, perSec: READS / cacheSmall, directPerSec: READS / rawSmall, ratio: rawSmall / cacheSmall });

// Disk-warm sequential 1 MiB reads.
const big = Buffer.alloc(1 << 20);
const n = Math.floor(SIZE / big.length);
const rawSeq = await timeIt(async () => {
  for (let i = 0; i < n; i++) await raw.read(big, 0, big.length, i * big.length);
});
const cacheSeq = await timeIt(async () => {
  for (let i = 0; i < n; i++) await storage.read(record, i * big.length, big.length);
});
const cacheSeqInto = await timeIt(async () => {
  for (let i = 0; i < n; i++) await storage.readInto(record, i * big.length, big);
});
report({ bench: 'warm-seq-1m', reads: n, mbPerSec: n / cacheSeq, intoMbPerSec: n / cacheSeqInto, directMbPerSec: n / rawSeq, ratio: rawSeq / cacheSeq, intoRatio: rawSeq / cacheSeqInto });
await raw.close();

// Cold small reads: from the source (a local file here), then from Redis.
if (process.env.REDIS === '1') {
  const redis = await startRedis();
  try {
    const m2 = new StorageMetrics();
    const cache = await RedisChunkCache.connect({ url: redis.url, metrics: m2 });
    const filler = new Storage({ disk: await DiskCache.open({ dir: path.join(work, 'cache-a') }), remote: cache, source: new FileLayerSource({ [record.diffId]: file }), metrics: m2 });
    const probe = offsets(50, 4096, 7);
    const fromSource = await timeIt(async () => {
      for (const o of probe) await filler.read(record, o, 4096);
    });
    await filler.flush(30_000);
    const m3 = new StorageMetrics();
    const cache2 = await RedisChunkCache.connect({ url: redis.url, metrics: m3 });
    const reader = new Storage({ disk: await DiskCache.open({ dir: path.join(work, 'cache-b') }), remote: cache2, source: new FileLayerSource({}), metrics: m3 });
    const fromRedis = await timeIt(async () => {
      for (const o of probe) await reader.read(record, o, 4096);
    });
    const snap = await m3.snapshot();
    report({ bench: 'cold-small-read', reads: probe.length, sourceMsEach: (fromSource * 1000) / probe.length, redisMsEach: (fromRedis * 1000) / probe.length, redisBytes: snap['bytes.remote'] });
    await filler.close();
    await reader.close();
  } finally {
    await redis.stop();
    await rm(path.join(work, 'cache-a'), { recursive: true, force: true });
    await rm(path.join(work, 'cache-b'), { recursive: true, force: true });
  }
}
await storage.close();
await rm(cacheDir, { recursive: true, force: true });
