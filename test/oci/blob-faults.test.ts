/** The registry client under faults injected by a proxy in front of the real registry. */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/oci/digest.js';
import { openBlobStore, openImage, pushLayout, type BlobStore } from '../../src/oci/index.js';
import { blobGets, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { LayoutWriter, writeImage, type TestImage } from './images.js';

const fastRetry = { attempts: 5, baseDelayMs: 5, maxDelayMs: 20 };

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

let registry: TestRegistry;
let proxy: FaultProxy;
let work: string;
let img: TestImage;
let store: BlobStore;
const repo = 'faults/app';

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  work = await mkdtemp(join(tmpdir(), 'clip-oci-faults-'));
  const big = Buffer.alloc(1_500_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  const w = new LayoutWriter(join(work, 'layout'));
  img = await writeImage(w, { compression: 'none', layers: [{ big }] });
  w.tag(img.manifest, 'v1');
  await w.save();
  await pushLayout(join(work, 'layout'), 'v1', `${proxy.host}/${repo}:v1`, { chunkSize: 512 * 1024 });
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});
beforeAll(() => {
  store = openBlobStore(`${proxy.host}/${repo}`, { retry: fastRetry });
});
afterEach(() => proxy.clearFaults());

const layer = (): TestImage['layers'][number] => img.layers[0]!;

describe('push', () => {
  it('uploaded the big layer in PATCH chunks and skips blobs the registry has', async () => {
    const patches = proxy.count((r) => r.method === 'PATCH');
    expect(patches).toBe(Math.ceil(layer().size / (512 * 1024)));
    const before = proxy.count((r) => r.method === 'PATCH' || r.method === 'POST');
    await pushLayout(join(work, 'layout'), 'v1', `${proxy.host}/${repo}:again`);
    expect(proxy.count((r) => r.method === 'PATCH' || r.method === 'POST')).toBe(before);
  });
});

describe('blob downloads under faults', () => {
  it('a blob download cut off mid-stream twice still completes with the right digest', async () => {
    const match = blobGets(layer().digest);
    proxy.inject({ kind: 'reset', afterBytes: 200_000, times: 1, match });
    proxy.inject({ kind: 'reset', afterBytes: 300_000, times: 1, match });
    const before = proxy.requests.length;
    const got = await readAll(await store.openBlob(layer()));
    expect(sha256Digest(got)).toBe(layer().digest);
    const gets = proxy.requests.slice(before).filter(match);
    expect(gets).toHaveLength(3);
    expect(gets[0]!.range).toBeUndefined();
    // Each resume asks for the rest, from at most where the cut was (a reset may drop bytes in flight).
    const starts = gets.slice(1).map((r) => Number(new RegExp(`^bytes=(\\d+)-${layer().size - 1}$`).exec(r.range ?? '')?.[1]));
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[0]).toBeLessThanOrEqual(200_000);
    expect(starts[1]).toBeGreaterThan(starts[0]!);
    expect(starts[1]).toBeLessThanOrEqual(starts[0]! + 300_000);
  });

  it('resumes after a clean truncation too', async () => {
    proxy.inject({ kind: 'truncate', afterBytes: 777_777, match: blobGets(layer().digest) });
    const got = await readAll(await store.openBlob(layer()));
    expect(sha256Digest(got)).toBe(layer().digest);
  });

  it('a corrupted blob is rejected with an error naming the digest', async () => {
    proxy.inject({ kind: 'flip', offset: 123_456, match: blobGets(layer().digest) });
    const stream = await store.openBlob(layer());
    const err = await readAll(stream).then(() => undefined, (e: unknown) => e as Error & { code?: string });
    expect(err?.code).toBe('EDIGEST');
    expect(err?.message).toContain(layer().digest);
  });

  it('retries a 503 and a 429 and then succeeds, with one more request than faults', async () => {
    const match = blobGets(layer().digest);
    proxy.inject({ kind: 'status', status: 503, times: 1, match });
    proxy.inject({ kind: 'status', status: 429, times: 1, match });
    const before = proxy.count(match);
    const got = await readAll(await store.openBlobRange(layer(), 100, 200));
    expect(got.equals(img.layerBytes[0]!.subarray(100, 200))).toBe(true);
    expect(proxy.count(match) - before).toBe(3);
  });

  it('gives up after its attempts with ENETWORK naming the blob', async () => {
    proxy.inject({ kind: 'status', status: 502, times: 10, match: blobGets(layer().digest) });
    await expect(store.openBlobRange(layer(), 0, 10)).rejects.toMatchObject({ code: 'ENETWORK', message: expect.stringContaining(layer().digest) });
  });

  it('copes with a server that ignores Range (200 with the whole blob)', async () => {
    proxy.inject({ kind: 'ignoreRange', match: blobGets(layer().digest) });
    const got = await readAll(await store.openBlobRange(layer(), 1_000_000, 1_000_100));
    expect(got.equals(img.layerBytes[0]!.subarray(1_000_000, 1_000_100))).toBe(true);
  });

  it('resumes an interrupted range read from where it stopped', async () => {
    const match = blobGets(layer().digest);
    proxy.inject({ kind: 'reset', afterBytes: 50_000, match });
    const before = proxy.requests.length;
    const got = await readAll(await store.openBlobRange(layer(), 10_000, 210_000));
    expect(got.equals(img.layerBytes[0]!.subarray(10_000, 210_000))).toBe(true);
    const ranges = proxy.requests.slice(before).filter(match).map((r) => r.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBe('bytes=10000-209999');
    const resumedAt = Number(/^bytes=(\d+)-209999$/.exec(ranges[1] ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(10_000);
    expect(resumedAt).toBeLessThanOrEqual(60_000);
  });
});

describe('redirects', () => {
  let storage: Server;
  let storageBase = '';
  const seen: { auth: boolean; url: string }[] = [];

  beforeAll(async () => {
    // A "storage host" on another origin that serves the blob, as S3 behind a registry would.
    storage = createServer((req, res) => {
      seen.push({ auth: req.headers.authorization !== undefined, url: req.url ?? '' });
      const body = img.layerBytes[0]!;
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m) {
        res.writeHead(206, { 'content-range': `bytes ${m[1]}-${m[2]}/${body.length}` }).end(body.subarray(Number(m[1]), Number(m[2]) + 1));
      } else {
        res.writeHead(200, { 'content-length': body.length }).end(body);
      }
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    storageBase = `http://localhost:${(storage.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    storage.closeAllConnections();
    await new Promise<void>((resolve) => storage.close(() => resolve()));
  });

  it('follows a redirect to another host without sending the registry Authorization', async () => {
    const authReg = await startRegistry({ tokenAuth: { users: { bob: 'pw' } } });
    const authProxy = await startFaultProxy(authReg.host);
    const creds = { credentials: { get: async () => ({ username: 'bob', password: 'pw' }) }, retry: fastRetry };
    try {
      await pushLayout(join(work, 'layout'), 'v1', `${authProxy.host}/${repo}:v1`, creds);
      // As a registry with auth redirects: an authorized GET (the first goes without credentials, gets its 401).
      authProxy.inject({ kind: 'redirect', base: storageBase, match: (r) => blobGets(layer().digest)(r) && r.authorized });
      const s = openBlobStore(`${authProxy.host}/${repo}`, creds);
      const got = await readAll(await s.openBlobRange(layer(), 5, 50));
      expect(got.equals(img.layerBytes[0]!.subarray(5, 50))).toBe(true);
      const registryHop = authProxy.requests.filter(blobGets(layer().digest)).at(-1)!;
      expect(registryHop.authorized).toBe(true);
      expect(seen).toEqual([{ auth: false, url: `/v2/${repo}/blobs/${layer().digest}` }]);
      await s.close?.();
    } finally {
      await authProxy.stop();
      await authReg.stop();
    }
  });
});

describe('an image read through the proxy', () => {
  it('resolves with manifest fetches counted', async () => {
    const src = openImage(`${proxy.host}/${repo}:v1`, { retry: fastRetry });
    const before = proxy.count((r) => r.path.includes('/manifests/'));
    const r = await src.resolve();
    expect(r.manifestDigest).toBe(img.manifest.digest);
    expect(proxy.count((r) => r.path.includes('/manifests/')) - before).toBe(1);
    await src.close?.();
  });
});

describe('deadlines', () => {
  it('a request that gets no answer times out and is retried', async () => {
    const s = openBlobStore(`${proxy.host}/${repo}`, { retry: fastRetry, timeouts: { headersMs: 300, bodyIdleMs: 300 } });
    const match = blobGets(layer().digest);
    proxy.inject({ kind: 'stall', match });
    const before = proxy.count(match);
    const got = await readAll(await s.openBlobRange(layer(), 0, 1000));
    expect(got.equals(img.layerBytes[0]!.subarray(0, 1000))).toBe(true);
    expect(proxy.count(match) - before).toBe(2);
    await s.close?.();
  });

  it('a body that goes silent mid-stream is resumed after the idle deadline', async () => {
    const s = openBlobStore(`${proxy.host}/${repo}`, { retry: fastRetry, timeouts: { headersMs: 300, bodyIdleMs: 300 } });
    const match = blobGets(layer().digest);
    proxy.inject({ kind: 'stall', afterBytes: 400_000, match });
    const before = proxy.requests.length;
    const got = await readAll(await s.openBlob(layer()));
    expect(sha256Digest(got)).toBe(layer().digest);
    expect(proxy.requests.slice(before).filter(match).map((r) => r.range)).toEqual([undefined, `bytes=400000-${layer().size - 1}`]);
    await s.close?.();
  });
});

describe('manifests under faults', () => {
  it('rejects a manifest whose bytes do not match the pinned digest', async () => {
    proxy.inject({ kind: 'flip', offset: 20, match: (r) => r.path.endsWith(`/manifests/${img.manifest.digest}`) });
    const src = openImage(`${proxy.host}/${repo}@${img.manifest.digest}`, { retry: fastRetry });
    await expect(src.resolve()).rejects.toMatchObject({ code: 'EDIGEST', message: expect.stringContaining(img.manifest.digest) });
    await src.close?.();
  });
});
