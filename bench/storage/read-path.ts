/**
 * Storage read-path benchmark (run by hand): node --import tsx bench/storage/read-path.ts
 *   SIZE_MB=1024   layer streamed for the memory figure and read warm (random bytes, made once under .tmp/)
 *   CHUNK_KB=1024  chunk size
 *   READS=20000    warm random 4 KiB reads
 *   COLD=1         cold small reads from a real docker-registry (gzip layer, checkpoints) and Redis
 *   COLD_MB=64     size of that layer; PROBES=30 cold reads each
 *   ONLY=memory|warm|cold  one part
 *   memory experiments: WINDOW_MB=4 (stream window), READAHEAD=4 (chunks), GC_EACH=1 (gc() after each
 *   piece, with --expose-gc: what is left is the live set, not garbage waiting for a collection)
 *
 * Reports (JSON lines), each ratio measured in the same run as its two sides:
 * - memory: rss, heapUsed, external and arrayBuffers while streaming the whole layer cold
 *   (baseline taken after a warm-up stream of 64 MiB, peaks sampled every 10 ms);
 * - disk-warm random 4 KiB reads and 1 MiB sequential reads per second, against fs read of the
 *   same bytes of the same file (the layer file itself, page cache warm for both);
 * - a cold 4 KiB read (a small file): latency and bytes fetched, from the registry and from Redis.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { scanLayer } from '../../src/archive/scan.js';
import { openBlobStore, type BlobStore } from '../../src/oci/index.js';
import { RegistryPusher } from '../../src/oci/push.js';
import type { RegistryRepository } from '../../src/oci/registry-source.js';
import { CheckpointSource, layerFromScan } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { FileLayerSource } from '../../src/storage/file-source.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { layerRecord, type LayerRecord } from '../../src/storage/types.js';
import { startRedis } from '../../test/support/redis.js';
import { startRegistry } from '../../test/support/registry.js';

const MB = 1024 * 1024;
const SIZE = Number(process.env.SIZE_MB ?? 1024) * MB;
const CHUNK = Number(process.env.CHUNK_KB ?? 1024) * 1024;
const READS = Number(process.env.READS ?? 20_000);
const COLD_SIZE = Number(process.env.COLD_MB ?? 64) * MB;
const PROBES = Number(process.env.PROBES ?? 30);
const ONLY = process.env.ONLY;
const work = path.resolve('.tmp/bench-storage');

const report = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));
const mib = (n: number): number => Math.round((n / MB) * 10) / 10;

async function randomFile(size: number): Promise<string> {
  await mkdir(work, { recursive: true });
  const file = path.join(work, `layer-${size}.bin`);
  if (await stat(file).then((s) => s.size === size, () => false)) return file;
  const out = createWriteStream(file);
  for (let done = 0; done < size; done += MB) {
    if (!out.write(randomBytes(Math.min(MB, size - done)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  out.end();
  await finished(out);
  return file;
}

/** The record an index would make of an uncompressed layer file (read into one buffer: no garbage before the memory baseline). */
async function recordOf(file: string, size: number, chunk: number): Promise<LayerRecord> {
  const whole = createHash('sha256');
  const digests: Buffer[] = [];
  const fh = await open(file);
  const buf = Buffer.allocUnsafe(chunk);
  for (let at = 0; at < size; at += chunk) {
    const n = Math.min(chunk, size - at);
    let got = 0;
    while (got < n) got += (await fh.read(buf, got, n - got, at + got)).bytesRead;
    whole.update(buf.subarray(0, n));
    digests.push(createHash('sha256').update(buf.subarray(0, n)).digest());
  }
  await fh.close();
  const diffId = `sha256:${whole.digest('hex')}`;
  return layerRecord({ diffId, digest: diffId, compression: 'none', compressedSize: size, uncompressedSize: size, chunkSize: chunk, chunkDigests: Buffer.concat(digests) });
}

function offsets(n: number, len: number, size: number, seed = 1): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return Math.floor((x / 0x7fffffff) * (size - len));
  });
}

async function seconds(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Peak growth of each process.memoryUsage() field over `fn`, from a baseline taken after a GC if exposed. */
async function memoryGrowth(fn: () => Promise<void>): Promise<Record<string, number>> {
  (globalThis as { gc?: () => void }).gc?.();
  const base = process.memoryUsage();
  const peak = { ...base };
  const sample = (): void => {
    const m = process.memoryUsage();
    for (const k of Object.keys(peak) as (keyof NodeJS.MemoryUsage)[]) peak[k] = Math.max(peak[k], m[k]);
  };
  const timer = setInterval(sample, 10);
  try {
    await fn();
  } finally {
    clearInterval(timer);
    sample();
  }
  return {
    rssMb: mib(peak.rss - base.rss),
    heapUsedMb: mib(peak.heapUsed - base.heapUsed),
    externalMb: mib(peak.external - base.external),
    arrayBuffersMb: mib(peak.arrayBuffers - base.arrayBuffers),
    baseRssMb: mib(base.rss),
  };
}

async function memoryBench(file: string, record: LayerRecord): Promise<void> {
  const cacheDir = path.join(work, 'cache-memory');
  await rm(cacheDir, { recursive: true, force: true });
  const storage = new Storage({
    disk: await DiskCache.open({ dir: cacheDir }), source: new FileLayerSource({ [record.diffId]: file }), statsIntervalMs: 0,
    ...(process.env.READAHEAD ? { readaheadChunks: Number(process.env.READAHEAD) } : {}),
  });
  const windowBytes = Number(process.env.WINDOW_MB ?? 4) * MB;
  (globalThis as { gc?: () => void }).gc?.();
  const cold = process.memoryUsage();
  // Warm-up: code paths compiled, pools and the first buffers made, before the baseline.
  const WARM = Math.min(64 * MB, SIZE);
  for await (const _ of storage.stream(record, 0, WARM, { windowBytes })) void _;
  let streamed = 0;
  let secs = 0;
  // RSS at each tenth of the stream: flat means it does not grow with the bytes read.
  const tenths: number[] = [];
  const growth = await memoryGrowth(async () => {
    secs = await seconds(async () => {
      for await (const piece of storage.stream(record, WARM, SIZE - WARM, { windowBytes })) {
        streamed += (piece as Buffer).length;
        if (process.env.GC_EACH === '1') (globalThis as { gc?: () => void }).gc?.();
        if (streamed >= ((tenths.length + 1) * (SIZE - WARM)) / 10) tenths.push(mib(process.memoryUsage().rss));
      }
    });
  });
  report({
    bench: 'memory-cold-stream', mb: mib(streamed), seconds: +secs.toFixed(2), mbPerSec: Math.round(mib(streamed) / secs),
    rssBeforeAnyReadMb: mib(cold.rss), peakRssGrowthFromBeforeAnyReadMb: +(growth.baseRssMb! + growth.rssMb! - mib(cold.rss)).toFixed(1),
    ...growth, rssEachTenthMb: tenths,
  });
  await storage.close();
  await rm(cacheDir, { recursive: true, force: true });
}

async function warmBench(file: string, record: LayerRecord): Promise<void> {
  const cacheDir = path.join(work, 'cache-warm');
  await rm(cacheDir, { recursive: true, force: true });
  const storage = new Storage({ disk: await DiskCache.open({ dir: cacheDir }), source: new FileLayerSource({ [record.diffId]: file }), statsIntervalMs: 0 });
  for await (const _ of storage.stream(record, 0, SIZE)) void _; // fill the disk cache
  const cached = storage.disk.pathOf(record);
  const raw = await open(cached);
  // Warm the page cache for both sides.
  const big = Buffer.alloc(MB);
  for (let at = 0; at < SIZE; at += MB) await raw.read(big, 0, MB, at);

  // Rounds alternate the three ways, so that load drifting on a shared machine hits each alike.
  const ROUNDS = 5;
  const small = offsets(READS, 4096, SIZE);
  const buf4k = Buffer.alloc(4096);
  const t4k = { direct: 0, read: 0, readInto: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const part = small.slice((r * READS) / ROUNDS, ((r + 1) * READS) / ROUNDS);
    t4k.direct += await seconds(async () => {
      for (const o of part) await raw.read(buf4k, 0, 4096, o);
    });
    t4k.read += await seconds(async () => {
      for (const o of part) await storage.read(record, o, 4096);
    });
    t4k.readInto += await seconds(async () => {
      for (const o of part) await storage.readInto(record, o, buf4k);
    });
  }
  report({
    bench: 'warm-random-4k', reads: READS,
    directPerSec: Math.round(READS / t4k.direct), readPerSec: Math.round(READS / t4k.read), readIntoPerSec: Math.round(READS / t4k.readInto),
    ratioRead: +(t4k.direct / t4k.read).toFixed(2), ratioReadInto: +(t4k.direct / t4k.readInto).toFixed(2),
  });

  const n = Math.floor(SIZE / MB);
  const t1m = { direct: 0, read: 0, readInto: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const from = Math.floor((r * n) / ROUNDS);
    const to = Math.floor(((r + 1) * n) / ROUNDS);
    t1m.direct += await seconds(async () => {
      for (let i = from; i < to; i++) await raw.read(big, 0, MB, i * MB);
    });
    t1m.read += await seconds(async () => {
      for (let i = from; i < to; i++) await storage.read(record, i * MB, MB);
    });
    t1m.readInto += await seconds(async () => {
      for (let i = from; i < to; i++) await storage.readInto(record, i * MB, big);
    });
  }
  report({
    bench: 'warm-seq-1m', reads: n,
    directPerSec: Math.round(n / t1m.direct), readPerSec: Math.round(n / t1m.read), readIntoPerSec: Math.round(n / t1m.readInto),
    ratioRead: +(t1m.direct / t1m.read).toFixed(2), ratioReadInto: +(t1m.direct / t1m.readInto).toFixed(2),
  });
  await verifyBench(cacheDir, raw, record, file);
  await raw.close();
  await storage.close();
  await rm(cacheDir, { recursive: true, force: true });
}

/**
 * What checking the disk tier costs: a process verifies each chunk on its first read from disk
 * (the whole chunk read and hashed), then serves it as it is. Each round opens a fresh store over
 * the filled cache (as a new process would) and reads its slice of the layer three ways, in turn:
 * the fs read of the cache file, the first pass (verifying) and a second pass (verified).
 */
async function verifyBench(cacheDir: string, raw: Awaited<ReturnType<typeof open>>, record: LayerRecord, file: string): Promise<void> {
  const ROUNDS = 5;
  const n = Math.floor(SIZE / MB);
  const big = Buffer.alloc(MB);
  const buf4k = Buffer.alloc(4096);
  const seq = { direct: 0, first: 0, again: 0 };
  const rnd = { direct: 0, first: 0, again: 0, reads: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const from = Math.floor((r * n) / ROUNDS);
    const to = Math.floor(((r + 1) * n) / ROUNDS);
    const fresh = async (): Promise<Storage> =>
      new Storage({ disk: await DiskCache.open({ dir: cacheDir }), source: new FileLayerSource({ [record.diffId]: file }), statsIntervalMs: 0 });
    // Sequential 1 MiB reads of this round's chunks.
    seq.direct += await seconds(async () => {
      for (let i = from; i < to; i++) await raw.read(big, 0, MB, i * MB);
    });
    let s = await fresh();
    seq.first += await seconds(async () => {
      for (let i = from; i < to; i++) await s.readInto(record, i * MB, big);
    });
    seq.again += await seconds(async () => {
      for (let i = from; i < to; i++) await s.readInto(record, i * MB, big);
    });
    await s.close();
    // One 4 KiB read in each chunk: the worst case, a whole chunk checked for each small read.
    const small = Array.from({ length: to - from }, (_, k) => (from + k) * MB + ((k * 7919 * 4096) % (MB - 4096)));
    rnd.reads += small.length;
    rnd.direct += await seconds(async () => {
      for (const o of small) await raw.read(buf4k, 0, 4096, o);
    });
    s = await fresh();
    rnd.first += await seconds(async () => {
      for (const o of small) await s.readInto(record, o, buf4k);
    });
    rnd.again += await seconds(async () => {
      for (const o of small) await s.readInto(record, o, buf4k);
    });
    await s.close();
  }
  report({
    bench: 'warm-verify-seq-1m', reads: n, chunkKiB: record.chunkSize / 1024,
    directMBps: Math.round(n / seq.direct), firstPassMBps: Math.round(n / seq.first), verifiedMBps: Math.round(n / seq.again),
    ratioFirst: +(seq.direct / seq.first).toFixed(2), ratioVerified: +(seq.direct / seq.again).toFixed(2),
  });
  report({
    bench: 'warm-verify-4k-one-per-chunk', reads: rnd.reads,
    directPerSec: Math.round(rnd.reads / rnd.direct), firstPerSec: Math.round(rnd.reads / rnd.first), verifiedPerSec: Math.round(rnd.reads / rnd.again),
    ratioFirst: +(rnd.direct / rnd.first).toFixed(2), ratioVerified: +(rnd.direct / rnd.again).toFixed(2),
  });
}

/** A BlobStore that counts the blob bytes it hands out. */
function counting(store: BlobStore): BlobStore & { bytes: number; requests: number } {
  const c = {
    location: store.location, bytes: 0, requests: 0,
    openBlob: store.openBlob.bind(store),
    async openBlobRange(...args: Parameters<BlobStore['openBlobRange']>): Promise<Readable> {
      c.requests++;
      const body = await store.openBlobRange(...args);
      body.on('data', (d: Buffer) => (c.bytes += d.length));
      return body;
    },
  };
  return c;
}

/** A tar of PROBES directories, each a 4 KiB file after ~COLD_MB/PROBES of random (incompressible) data; gzipped. */
async function coldLayer(): Promise<{ gz: string }> {
  const base = path.join(work, `cold-${COLD_SIZE}-${PROBES}`);
  const gz = `${base}.tar.gz`;
  if (await stat(gz).then(() => true, () => false)) return { gz };
  const src = `${base}-src`;
  await rm(src, { recursive: true, force: true });
  for (let i = 0; i < PROBES; i++) {
    const d = path.join(src, `d${String(i).padStart(3, '0')}`);
    await mkdir(d, { recursive: true });
    await writeFile(path.join(d, 'a-big.bin'), randomBytes(Math.floor(COLD_SIZE / PROBES)));
    await writeFile(path.join(d, 'b-small.txt'), randomBytes(4096));
  }
  execFileSync('sh', ['-c', `tar --sort=name --format=pax -C '${src}' -cf - . | gzip -1 > '${gz}.part' && mv '${gz}.part' '${gz}'`]);
  await rm(src, { recursive: true, force: true });
  return { gz };
}

async function coldBench(): Promise<void> {
  // A gzip layer (mostly random data: it does not compress, like most binaries) in a real registry.
  const { gz } = await coldLayer();
  const scan = await scanLayer(createReadStream(gz), { compression: 'gzip', chunkSize: CHUNK });
  const layer = layerFromScan(scan);
  const smallFiles = scan.entries.filter((e) => e.type === 'file' && e.size === 4096);
  const registry = await startRegistry();
  const redis = await startRedis();
  const dirs = ['cold-a', 'cold-b'].map((d) => path.join(work, d));
  try {
    const repo = openBlobStore(`${registry.host}/bench/cold`) as RegistryRepository;
    await new RegistryPusher(repo).pushBlob({ digest: layer.digest, size: layer.compressedSize }, (s, e) => createReadStream(gz, { start: s, end: e - 1 }));
    const probes = smallFiles.map((e) => e.dataOffset);
    const open$ = async (dir: string, store: BlobStore): Promise<{ storage: Storage; metrics: StorageMetrics }> => {
      await rm(dir, { recursive: true, force: true });
      const metrics = new StorageMetrics();
      const remote = await RedisChunkCache.connect({ url: redis.url, metrics });
      const storage = new Storage({ disk: await DiskCache.open({ dir }), remote, source: new CheckpointSource(store), metrics, statsIntervalMs: 0 });
      return { storage, metrics };
    };
    const timeEach = async (s: Storage): Promise<number[]> => {
      const ms: number[] = [];
      for (const o of probes) ms.push((await seconds(async () => void (await s.read(layer, o, 4096)))) * 1000);
      return ms.sort((x, y) => x - y);
    };
    const stat$ = (ms: number[]): Record<string, number> => ({
      medianMs: +ms[Math.floor(ms.length / 2)]!.toFixed(2), p90Ms: +ms[Math.floor(ms.length * 0.9)]!.toFixed(2), maxMs: +ms.at(-1)!.toFixed(2),
    });
    // A: everything from the registry (one range request per read, from the nearest checkpoint).
    const blobsA = counting(openBlobStore(`${registry.host}/bench/cold`));
    const a = await open$(dirs[0]!, blobsA);
    const fromRegistry = await timeEach(a.storage);
    await a.storage.flush(60_000);
    const snapA = await a.metrics.snapshot();
    report({
      bench: 'cold-4k-from-registry', probes: probes.length, layerMb: mib(layer.uncompressedSize), compressedMb: mib(layer.compressedSize),
      checkpoints: scan.checkpoints.length, chunkKb: CHUNK / 1024, ...stat$(fromRegistry),
      registryRequests: blobsA.requests, compressedBytesPerRead: Math.round(blobsA.bytes / probes.length), uncompressedBytesPerRead: Math.round(snapA['bytes.source']! / probes.length),
    });
    await a.storage.close();
    // B: own cache directory, everything from Redis (what A published).
    const blobsB = counting(openBlobStore(`${registry.host}/bench/cold`));
    const b = await open$(dirs[1]!, blobsB);
    const fromRedis = await timeEach(b.storage);
    const snapB = await b.metrics.snapshot();
    report({
      bench: 'cold-4k-from-redis', probes: probes.length, ...stat$(fromRedis), registryRequests: blobsB.requests,
      redisRequests: snapB['requests.remote'], redisBytesPerRead: Math.round(snapB['bytes.remote']! / probes.length),
    });
    await b.storage.close();
  } finally {
    await redis.stop();
    await registry.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

if (!ONLY || ONLY === 'memory' || ONLY === 'warm') {
  const file = await randomFile(SIZE);
  const record = await recordOf(file, SIZE, CHUNK);
  if (!ONLY || ONLY === 'memory') await memoryBench(file, record);
  if (!ONLY || ONLY === 'warm') await warmBench(file, record);
}
if ((!ONLY && process.env.COLD !== '0') || ONLY === 'cold') await coldBench();
