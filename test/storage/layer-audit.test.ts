/**
 * The index audit: once a layer is whole on disk, an index that lies about it (a file placed at
 * another offset, with a valid trailer, as a crafted published index would be) is caught, counted,
 * and condemned locally and in the shared cache (a real redis-server), so no node takes it again.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import * as F from '../../src/index/format.js';
import { ImageIndex } from '../../src/index/reader.js';
import { LayoutSource, type ResolvedImage } from '../../src/oci/index.js';
import { startBackgroundFetch } from '../../src/storage/background-fetch.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { sharedIndexKey, storeSharedIndex } from '../../src/storage/index-artifact.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { resolveIndex } from '../../src/storage/index-resolver.js';
import { indexImage, storeCachedIndex } from '../../src/storage/indexer.js';
import { auditLayer, auditOrCondemn } from '../../src/storage/layer-audit.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { silentLogger } from '../../src/util/log.js';
import { fixture } from '../support/fixtures/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';

let tmp: string;
let redis: RedisServer;
let image: ResolvedImage;
let honest: Buffer;

beforeAll(async () => {
  [tmp, redis] = await Promise.all([mkdtemp(join(tmpdir(), 'clip-audit-')), startRedis()]);
  const fx = await fixture('basic');
  const source = new LayoutSource(fx.layoutDir, fx.tag);
  const made = await indexImage(source, {});
  image = made.image;
  honest = made.bytes;
});
afterAll(async () => {
  await closeScanPool();
  await redis?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** The index with one file's data offset moved 512 bytes on, resealed (its trailer valid). */
function lyingAbout(path: string): { bytes: Buffer; layer: number } {
  const b = Buffer.from(honest);
  const index = new ImageIndex(honest, 'honest');
  const ino = index.resolvePathOrThrow(path);
  const loc = index.dataLocation(ino)!;
  const section = (id: number): number => {
    for (let i = 0; i < b.readUInt32LE(12); i++) {
      const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
      if (b.readUInt32LE(e) === id) return b.readDoubleLE(e + 8);
    }
    throw new Error(`no section ${id}`);
  };
  const record = section(F.Section.Entries) + b.readUInt32LE(section(F.Section.Inodes) + 4 * ino) * F.ENTRY_RECORD_SIZE;
  expect(b.readDoubleLE(record + F.E_UNION)).toBe(loc.offset);
  b.writeDoubleLE(loc.offset + 512, record + F.E_UNION);
  createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
  return { bytes: b, layer: loc.layer };
}

async function storeOver(cacheDir: string, index: ImageIndex, remote?: RedisChunkCache): Promise<Storage> {
  const fx = await fixture('basic');
  return new Storage({
    disk: await DiskCache.open({ dir: cacheDir }), source: new CheckpointSource(new LayoutSource(fx.layoutDir, fx.tag)),
    ...(remote ? { remote } : {}), statsIntervalMs: 0,
  });
}

describe('the index audit', () => {
  it('an honest index matches every layer once complete', async () => {
    const index = new ImageIndex(honest, 'honest');
    const storage = await storeOver(join(tmp, 'honest'), index);
    const layers = indexLayers(index);
    for (const [n, layer] of layers.entries()) {
      await storage.complete(layer);
      expect(await auditLayer(storage, index, n, layer)).toEqual({ ok: true });
    }
    await storage.close();
  });

  it('an index that moves a file is caught after background fetch, and condemned here and in the shared cache', async () => {
    const { bytes, layer: n } = lyingAbout('/usr/lib/libdemo.so.1');
    const index = new ImageIndex(bytes, 'published');
    const cacheDir = join(tmp, 'node');
    // As a node that took it from the shared cache has it: there, and in its local cache.
    const remote = await RedisChunkCache.connect({ url: redis.url });
    expect(await storeSharedIndex(remote, image.manifestDigest, bytes)).toBe(true);
    await (await DiskCache.open({ dir: cacheDir })).close();
    await rm(join(cacheDir, 'indexes'), { recursive: true, force: true });
    await storeCachedIndex(cacheDir, image.manifestDigest, bytes);

    const storage = await storeOver(cacheDir, index, remote);
    const layers = indexLayers(index);
    const errors: string[] = [];
    const logger = { ...silentLogger, info: () => {}, error: (o: { reason: string }) => errors.push(o.reason) } as unknown as typeof silentLogger;
    const results: unknown[] = [];
    const bg = startBackgroundFetch(storage, layers, {
      bytesPerSecond: 1e9, idleMs: 0,
      onLayerComplete: async (layer, signal) => results.push(await auditOrCondemn(storage, index, layers.indexOf(layer as never), layer, { cacheDir, logger, signal })),
    });
    await bg.done;
    expect(results).toHaveLength(layers.length);
    expect(results[n]).toEqual({ ok: false, reason: expect.stringMatching(/places a file of \d+ bytes at offset \d+, where the layer has no file/) });
    expect(results.filter((r) => (r as { ok: boolean }).ok)).toHaveLength(layers.length - 1);
    expect(errors).toHaveLength(1);
    expect((await storage.metrics.snapshot()).indexAuditFailures).toBe(1);
    await storage.close();

    // Condemned: gone from the local cache (kept aside as .bad), listed, and gone from the shared cache.
    expect((await readdir(join(cacheDir, 'indexes'))).sort()).toEqual(['bad', `${image.manifestDigest.slice(7)}.clip.bad`].sort());
    const check = await RedisChunkCache.connect({ url: redis.url });
    expect(await check.fetchValue(sharedIndexKey(image.manifestDigest))).toBeNull();

    // Put back into the shared cache by a node that missed the news: no node takes it again. The
    // first node indexes the image itself and shares that; the next takes the honest one.
    expect(await storeSharedIndex(check, image.manifestDigest, bytes)).toBe(true);
    await check.close();
    const fx = await fixture('basic');
    const origins: string[] = [];
    for (const dir of [cacheDir, join(tmp, 'other-node')]) {
      const found = await resolveIndex(new LayoutSource(fx.layoutDir, fx.tag), image, { cacheDir: dir, remoteCache: redis.url });
      origins.push(found.origin);
      expect(found.bytes.equals(honest)).toBe(true);
    }
    expect(origins).toEqual(['indexed', 'shared']);
  });

  it('a layer whose bytes are not the diff_id is caught even when every offset matches', async () => {
    const index = new ImageIndex(honest, 'honest');
    // The record as an index that claims another diff_id for the same bytes would give it.
    const layer = { ...indexLayers(index)[0]!, diffId: `sha256:${'0'.repeat(64)}` };
    const storage = await storeOver(join(tmp, 'diffid'), index);
    await storage.complete(layer);
    expect(await auditLayer(storage, index, 0, layer)).toEqual({ ok: false, reason: expect.stringContaining('not its diff_id') });
    await storage.close();
  });
});
