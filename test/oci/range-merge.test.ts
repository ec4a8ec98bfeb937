/**
 * Merged range fetches against the real docker-registry, counted by the fault proxy: a read whose
 * span another read is inflating asks the registry for nothing more, a failed shared fetch is
 * retried once for both readers, and range requests reuse kept-alive connections.
 */
import { readFile, rm } from 'node:fs/promises';
import type { Agent } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fetchStart } from '../../src/archive/random-access.js';
import type { RegistryRepository} from '../../src/oci/index.js';
import { openBlobStore, RegistryPusher, type BlobStore } from '../../src/oci/index.js';
import { CheckpointSource, layerFromScan, type CompressedRange, type ResumableLayer } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { blobGets, startFaultProxy, type FaultProxy, type ProxiedRequest } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { makeGzipLayout, tempDir } from '../storage/helpers.js';

const CHUNK = 64 * 1024;
const repo = 'merge/layer';
const fastRetry = { attempts: 5, baseDelayMs: 5, maxDelayMs: 20 };

let registry: TestRegistry;
let proxy: FaultProxy;
let root: string;
let tar: Buffer;
let layer: ResumableLayer;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  root = await tempDir('clip-oci-merge-');
  const made = await makeGzipLayout(root, { files: 16, bytesEach: 200_000, chunkSize: CHUNK, span: 256 * 1024 });
  tar = made.tar;
  layer = layerFromScan(made.scan);
  const blob = await readFile(`${made.layoutDir}/blobs/sha256/${made.scan.digest.slice(7)}`);
  const store = openBlobStore(`${registry.host}/${repo}`) as RegistryRepository;
  await new RegistryPusher(store).pushBlob({ digest: layer.digest, size: blob.length }, (s, e) => blob.subarray(s, e));
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  await rm(root, { recursive: true, force: true });
});
afterEach(() => {
  proxy.clearFaults();
  proxy.setRtt(0);
});

/** Chunk c inside the span [P, Q) of its checkpoint, its next chunk straddling Q. */
function straddling(): { c: number; p: CompressedRange; q: CompressedRange } {
  for (let c = 1; (c + 3) * CHUNK <= tar.length; c++) {
    const p = layer.compressedRange(c * CHUNK, (c + 1) * CHUNK);
    const q = p.endOut!;
    if (p.checkpoint.out <= c * CHUNK && q > (c + 1) * CHUNK && q < (c + 2) * CHUNK) return { c, p, q: layer.compressedRange(q, q + 1) };
  }
  throw new Error('no chunk straddles a checkpoint after a chunk inside its span');
}

/** Range GETs of the layer blob since `from`, as [start, end) (end exclusive). */
function rangesSince(from: number): [number, number][] {
  const isLayer = blobGets(layer.digest);
  return proxy.requests
    .slice(from)
    .filter((r: ProxiedRequest) => isLayer(r) && r.range)
    .map((r) => {
      const [a, b] = r.range!.replace('bytes=', '').split('-').map(Number) as [number, number];
      return [a, b + 1];
    });
}

/** Requests of the store's connection pool not answered to their end (their connections are busy). */
function requestsRunning(store: BlobStore): number {
  const agent = ((store as RegistryRepository).client as unknown as { agent: Agent }).agent;
  return Object.values(agent.stats).reduce((n, pool) => n + pool.running + pool.pending, 0);
}

async function withStorage(merge: boolean, body: (s: Storage, store: BlobStore) => Promise<void>, retry = fastRetry): Promise<void> {
  const dir = await tempDir();
  const disk = await DiskCache.open({ dir });
  const store = openBlobStore(`${proxy.host}/${repo}`, { retry });
  try {
    await body(new Storage({ disk, source: new CheckpointSource(store, { merge }), readaheadChunks: 0, retryBackoffMs: 5 }), store);
  } finally {
    await disk.close();
    await rm(dir, { recursive: true, force: true });
  }
}

describe('range fetches merged by checkpoint span, through a registry', () => {
  it('a second read needing the span a first read is fetching makes no second request from that checkpoint', async () => {
    const { c, p, q } = straddling();
    for (const merge of [true, false]) {
      const from = proxy.requests.length;
      // The first read's request must be the one from P: asked together, the second read could reach
      // the source first and fetch P and Q in one flight. It starts once the proxy has the first
      // request, whose answer waits 150 ms: time to join it even on a busy machine.
      proxy.setRtt(150);
      await withStorage(merge, async (s) => {
        const readA = s.read(layer, c * CHUNK + 3, 100);
        await vi.waitUntil(() => rangesSince(from).some((r) => r[0] === p.start), { timeout: 10_000, interval: 2 });
        const [a, b] = await Promise.all([readA, s.read(layer, (c + 1) * CHUNK + 5, 100)]);
        expect(a.equals(tar.subarray(c * CHUNK + 3, c * CHUNK + 103))).toBe(true);
        expect(b.equals(tar.subarray((c + 1) * CHUNK + 5, (c + 1) * CHUNK + 105))).toBe(true);
        expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(0);
      });
      const ranges = rangesSince(from);
      const fromP = ranges.filter((r) => r[0] === p.start).length;
      if (merge) {
        expect(fromP).toBe(1);
        expect(ranges.map((r) => r[0]).sort((x, y) => x - y)).toEqual([p.start, fetchStart(q.checkpoint)]);
      } else {
        expect(fromP).toBe(2); // the overlap merging removes
      }
    }
  });

  it('a reset of the shared fetch fails both readers; they retry with one request and get verified bytes', async () => {
    const { c, p } = straddling();
    const from = proxy.requests.length;
    proxy.inject({ kind: 'reset', afterBytes: 2000, match: (r) => blobGets(layer.digest)(r) && r.range === `bytes=${p.start}-${p.end - 1}` });
    // The first reader's request must be the shared one: the second read starts once the proxy has
    // it, and the answer waits 150 ms, time for the second read to join it even on a busy machine.
    proxy.setRtt(150);
    await withStorage(true, async (s) => {
      const readA = s.read(layer, c * CHUNK + 3, 100);
      await vi.waitUntil(() => rangesSince(from).some((r) => r[0] === p.start), { timeout: 10_000, interval: 2 });
      const [a, b] = await Promise.all([readA, s.read(layer, (c + 1) * CHUNK + 5, 100)]);
      expect(a.equals(tar.subarray(c * CHUNK + 3, c * CHUNK + 103))).toBe(true);
      expect(b.equals(tar.subarray((c + 1) * CHUNK + 5, (c + 1) * CHUNK + 105))).toBe(true);
      const m = await s.metrics.snapshot();
      expect(m['verifyFailures.source']).toBe(0);
      expect(m['errors.source']).toBeGreaterThanOrEqual(1);
    }, { ...fastRetry, attempts: 1 }); // no resume inside the client: the failure reaches the readers
    const ranges = rangesSince(from);
    // The reset request and one retry from P (not one per reader); the second reader's own from Q.
    expect(ranges.filter((r) => r[0] === p.start).length).toBe(2);
    expect(ranges.length).toBe(3);
  });

  it('range requests one after another reuse kept-alive connections', async () => {
    const before = proxy.connections;
    const from = proxy.requests.length;
    await withStorage(true, async (s, store) => {
      const chunks = Math.floor(tar.length / CHUNK);
      for (const k of [1, Math.floor(chunks / 3), Math.floor(chunks / 2), chunks - 2]) {
        expect((await s.read(layer, k * CHUNK, 100)).equals(tar.subarray(k * CHUNK, k * CHUNK + 100))).toBe(true);
        // The fetch finishes its span in the background: waited for (a fixed pause was short under load).
        await vi.waitUntil(() => requestsRunning(store) === 0, { timeout: 30_000, interval: 5 });
      }
    });
    expect(rangesSince(from).length).toBe(4);
    const used = new Set(proxy.requests.slice(from).map((r) => r.connection));
    expect(proxy.connections - before).toBe(used.size);
    // Five requests (the ping and four ranges) on at most two connections: the ping's may not be
    // back in the pool when the first range is sent; every later range finds one idle.
    expect(used.size).toBeLessThanOrEqual(2);
  });
});
