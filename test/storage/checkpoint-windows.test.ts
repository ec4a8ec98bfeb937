/**
 * Checkpoint windows fetched by range (index format 4), against the real docker-registry 2.8 and a
 * real redis-server: an index published without its windows, read by nodes with empty caches;
 * every file's bytes equal `umoci unpack` of the image. The windows come from the artifact's
 * windows blob (first node), the shared cache (a node sharing it), the local windows file (the
 * first node again); a damaged or truncated copy in a cache falls to the next tier; a damaged
 * windows blob in the registry is ECORRUPT naming image, layer and checkpoint, and nothing is
 * served from it.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import * as F from '../../src/index/format.js';
import { ImageIndex } from '../../src/index/reader.js';
import { splitWindows } from '../../src/index/published.js';
import { openImage, RegistryPusher, type RegistryRepository, type ResolvedImage } from '../../src/oci/index.js';
import { pushArtifact } from '../../src/oci/referrers.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { indexWindows, sharedWindowsKey, windowsFilePath } from '../../src/storage/checkpoint-windows.js';
import { FORMAT_ANNOTATION, INDEX_ARTIFACT_TYPE, INDEX_BLOB_TYPE, packIndex, publishIndex, WINDOWS_BLOB_TYPE } from '../../src/storage/index-artifact.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { resolveIndex } from '../../src/storage/index-resolver.js';
import { openStorage } from '../../src/storage/index.js';
import { RedisChunkCache } from '../../src/storage/remote-cache.js';
import { S_IFMT, S_IFREG } from '../../src/index/types.js';
import { clip } from '../cli/program.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { umociUnpack } from '../support/tools.js';
import { reseal, section } from '../index/crafted.js';

let registry: TestRegistry;
let redis: RedisServer;
let tmp: string;
let ref: string;
let image: ResolvedImage;
/** The index as its maker has it: windows in the file. */
let whole: Buffer;
/** Every regular file of the image, as umoci unpacks it. */
let rootfs: string;

beforeAll(async () => {
  [registry, redis, tmp] = await Promise.all([startRegistry(), startRedis(), mkdtemp(join(tmpdir(), 'clip-windows-'))]);
  ref = await pushFixture('basic', registry.host);
  const fx = await fixture('basic');
  rootfs = await umociUnpack(fx.layoutDir, fx.oracleTag ?? fx.tag, join(tmp, 'umoci'));
  const src = openImage(ref) as RegistryRepository;
  try {
    image = await src.resolve();
    // Small spans: the fixture's layers get several checkpoints with windows.
    whole = (await resolveIndex(src, image, { cacheDir: join(tmp, 'publisher'), discover: false, indexing: { span: 64 * 1024, chunkSize: 64 * 1024 } })).bytes;
    await publishIndex(src, new RegistryPusher(src), image, whole);
  } finally {
    await src.close?.();
  }
}, 180_000);
afterAll(async () => {
  await closeScanPool();
  await Promise.all([registry?.stop(), redis?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

/** A node: the index resolved as a mount resolves it, and a storage over it. */
async function node(cacheDir: string, remoteCache?: string, chunkPrefix?: string): Promise<{
  index: ImageIndex; readAll(): Promise<number>; readFile(path: string): Promise<Buffer>; readAt(layer: number, offset: number, length: number): Promise<Buffer>; close(): Promise<void>;
}> {
  const src = openImage(ref) as RegistryRepository;
  const { index } = await resolveIndex(src, image, { cacheDir, ...(remoteCache ? { remoteCache } : {}) });
  // A generous Redis timeout: a GETRANGE slowed by a loaded machine must not send windows to the registry.
  const storage = await openStorage({
    source: new CheckpointSource(src), cacheDir, ...(remoteCache ? { remoteCache, remoteTimeoutMs: 10_000 } : {}), ...(chunkPrefix ? { remotePrefix: chunkPrefix } : {}),
  });
  const layers = indexLayers(index);
  const read = async (ino: number): Promise<Buffer> => {
    const loc = index.dataLocation(ino)!;
    return loc.size ? storage.read(layers[loc.layer]!, loc.offset, loc.size) : Buffer.alloc(0);
  };
  return {
    index,
    readFile: (path) => read(index.resolvePathOrThrow(path)),
    readAt: (layer, offset, length) => storage.read(layers[layer]!, offset, length),
    /** Reads every regular file and compares it with umoci's; returns how many. */
    async readAll() {
      let n = 0;
      for (const { path, ino } of index.walk()) {
        if ((index.mode(ino) & S_IFMT) !== S_IFREG) continue;
        const got = await read(ino);
        expect(got.equals(await readFile(join(rootfs, path))), path).toBe(true);
        n++;
      }
      return n;
    },
    async close() {
      await storage.close();
      await src.close?.();
    },
  };
}

/** A node with this cache reads every file (each equal to umoci's); where its windows came from. */
async function readEverything(cacheDir: string, remoteCache?: string, chunkPrefix?: string): Promise<ReturnType<typeof indexWindows>['stats']> {
  const n = await node(cacheDir, remoteCache, chunkPrefix);
  try {
    expect(await n.readAll()).toBeGreaterThan(3);
    return indexWindows(n.index).stats;
  } finally {
    await n.close();
  }
}

/** A cache directory holding the image's published index, and this copy of its windows blob as its windows file. */
async function nodeWithWindowsFile(cacheDir: string, windows: Buffer): Promise<void> {
  await resolveIndex(openImage(ref), image, { cacheDir });
  await mkdir(join(cacheDir, 'windows'), { recursive: true });
  await writeFile(windowsFilePath(cacheDir, new ImageIndex(whole).windowsBlob!.digest), windows);
}

/** Push an index artifact of these two blobs as the image's newest. */
async function pushIndexArtifact(indexBytes: Buffer, windows: Buffer): Promise<void> {
  const repo = openImage(ref) as RegistryRepository;
  try {
    await pushArtifact(repo, new RegistryPusher(repo), {
      artifactType: INDEX_ARTIFACT_TYPE,
      subject: { mediaType: image.manifestMediaType, digest: image.manifestDigest, size: image.manifestBytes.length },
      blobs: [{ mediaType: INDEX_BLOB_TYPE, bytes: await packIndex(indexBytes) }, { mediaType: WINDOWS_BLOB_TYPE, bytes: windows }],
      annotations: { [FORMAT_ANNOTATION]: String(F.FORMAT_VERSION) },
    });
  } finally {
    await repo.close();
  }
}

describe('checkpoint windows fetched by range (index format 4)', () => {
  it('a published index leaves its windows out; the eager part round-trips and takes each window only against its digest', () => {
    const made = new ImageIndex(whole, 'whole');
    expect(made.version).toBe(F.FORMAT_VERSION);
    expect(made.windowsAtHand).toBe(true);
    const { eager, windows } = splitWindows(whole, 'whole');
    expect(windows!.length).toBe(made.windowsBytes);
    expect(eager.length).toBeLessThanOrEqual(whole.length - windows!.length); // the same file less the section
    expect(eager.length).toBeGreaterThan(whole.length - windows!.length - 8); // (and its padding)
    const lazy = new ImageIndex(eager, 'eager');
    expect(lazy.windowsAtHand).toBe(false);
    expect(lazy.windowsBlob).toEqual({ digest: `sha256:${createHash('sha256').update(windows!).digest('hex')}`, size: windows!.length });
    let checked = 0;
    for (let l = 0; l < lazy.layers.length; l++) {
      for (let i = 0; i < lazy.checkpointCount(l); i++) {
        if (!lazy.needsWindow(l, i)) continue;
        expect(() => lazy.checkpoint(l, i)).toThrow(expect.objectContaining({ code: 'ENOTFOUND' }));
        const p = lazy.windowPlace(l, i);
        const packed = windows!.subarray(p.offset, p.offset + p.length);
        const got = lazy.checkpointWith(l, i, packed);
        const want = made.checkpoint(l, i);
        expect([got.out, got.in, got.bits, got.window.equals(want.window)]).toEqual([want.out, want.in, want.bits, true]);
        const bad = Buffer.from(packed);
        bad[bad.length >> 1]! ^= 0x40;
        expect(() => lazy.checkpointWith(l, i, bad)).toThrow(expect.objectContaining({
          code: 'ECORRUPT', message: expect.stringContaining(`checkpoint ${i} window of layer ${lazy.layers[l]!.digest} does not match its digest`),
        }));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(3);
  });

  it('a first node takes the windows it needs from the registry blob, keeps them locally and in the shared cache; reads equal umoci unpack', async () => {
    const stats = await readEverything(join(tmp, 'node-a'), redis.url);
    expect(stats.source).toBeGreaterThan(0);
    expect(stats.local + stats.remote).toBe(0);
  }, 120_000);

  it('a second node sharing the cache takes them from it (GETRANGE), not from the registry', async () => {
    // Its chunks are not in the shared cache (another prefix): reading them needs the windows.
    const stats = await readEverything(join(tmp, 'node-b'), redis.url, 'clip:other-chunks:');
    expect(stats.remote).toBeGreaterThan(0);
    expect(stats.source).toBe(0);
  }, 120_000);

  it('the first node again takes them from its local windows file', async () => {
    const a = await node(join(tmp, 'node-a'));
    try {
      expect(a.index.windowsAtHand).toBe(false); // the published (eager) index, kept as it came
    } finally {
      await a.close();
    }
    // A fresh disk cache over that windows file: chunks are fetched again, windows come from the file.
    const c = join(tmp, 'node-c');
    await nodeWithWindowsFile(c, await readFile(windowsFilePath(join(tmp, 'node-a'), new ImageIndex(whole).windowsBlob!.digest)));
    const stats = await readEverything(c);
    expect(stats.local).toBeGreaterThan(0);
    expect(stats.source + stats.remote).toBe(0);
  }, 120_000);

  it('clip cache gc weighs windows files with layers: a plain gc keeps them, --all removes them', async () => {
    const dir = join(tmp, 'node-c');
    const file = windowsFilePath(dir, new ImageIndex(whole).windowsBlob!.digest);
    expect((await stat(file)).isFile()).toBe(true);
    const plain = JSON.parse((await clip('cache', 'gc', '--cache-dir', dir, '--json')).stdout.toString()) as Record<string, number>;
    expect(plain).toMatchObject({ windowsEvicted: 0 });
    expect((await stat(file)).isFile()).toBe(true);
    const text = (await clip('cache', 'gc', '--cache-dir', dir, '--all')).stdout.toString();
    expect(text).toMatch(/and 1 windows file \(/);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a truncated or damaged copy in a cache is a miss there: the next tier gives the right window', async () => {
    const blob = new ImageIndex(whole).windowsBlob!;
    const remote = await RedisChunkCache.connect({ url: redis.url });
    try {
      // The shared cache's copy (the windows nodes fetched, at their places) cut to a quarter, and flipped.
      const shared = (await remote.fetchValue(sharedWindowsKey(blob.digest)))!;
      expect(shared.length).toBeGreaterThan(blob.size >> 1);
      const cut = Buffer.from(shared.subarray(0, shared.length >> 2));
      for (let i = 0; i < cut.length; i += 7) cut[i]! ^= 0xff;
      expect(await remote.storeValue(sharedWindowsKey(blob.digest), cut)).toBe(true);
    } finally {
      await remote.close();
    }
    // A node whose local windows file is cut short too.
    const d = join(tmp, 'node-d');
    await nodeWithWindowsFile(d, (await readFile(windowsFilePath(join(tmp, 'node-a'), blob.digest))).subarray(0, blob.size >> 3));
    const stats = await readEverything(d, redis.url, 'clip:more-chunks:');
    expect(stats.source).toBeGreaterThan(0);
    expect(stats.missed).toBeGreaterThan(0);
  }, 120_000);

  it('an artifact whose windows blob is not the one its index names (a truncated blob) is skipped', async () => {
    const { eager, windows } = splitWindows(whole);
    await pushIndexArtifact(eager, windows!.subarray(0, windows!.length - 100));
    const warned: string[] = [];
    const log = { warn: (o: { err?: string }) => warned.push(o.err ?? ''), info: () => undefined, debug: () => undefined, error: () => undefined } as never;
    const src = openImage(ref);
    try {
      const r = await resolveIndex(src, image, { cacheDir: join(tmp, 'node-e'), logger: log });
      expect(r.origin).toBe('registry');
      expect(r.bytes.equals(eager)).toBe(true); // the honest artifact before it
      expect(warned.join('\n')).toMatch(/windows.*layer sha256:[0-9a-f]{64} of \d+ bytes/);
    } finally {
      await src.close?.();
    }
  }, 120_000);

  it('an index published in the registry, cached on a node, is not used for the same image read from elsewhere (a layout): its windows are not there', async () => {
    const cacheDir = join(tmp, 'node-layout');
    const first = await node(cacheDir);
    await first.close();
    expect(first.index.windowsAtHand).toBe(false); // cached as it came: without its windows
    const fx = await fixture('basic');
    const layout = openImage(fx.ref);
    try {
      const resolved = await layout.resolve();
      expect(resolved.manifestDigest).toBe(image.manifestDigest); // the same image, so the cache has its index
      const got = await resolveIndex(layout, resolved, { cacheDir, discover: false });
      expect(got.origin).toBe('indexed');
      expect(got.index.windowsAtHand).toBe(true);
      // Every file reads from the layout as umoci unpacks it.
      const storage = await openStorage({ source: new CheckpointSource(layout), cacheDir: join(tmp, 'node-layout-chunks') });
      try {
        const layers = indexLayers(got.index);
        let n = 0;
        for (const { path, ino } of got.index.walk()) {
          const loc = (got.index.mode(ino) & S_IFMT) === S_IFREG ? got.index.dataLocation(ino) : undefined;
          if (!loc?.size) continue;
          expect((await storage.read(layers[loc.layer]!, loc.offset, loc.size)).equals(await readFile(join(rootfs, path))), path).toBe(true);
          n++;
        }
        expect(n).toBeGreaterThan(3);
      } finally {
        await storage.close();
      }
      // From the registry again, where the windows are, the cached index serves.
      const again = openImage(ref) as RegistryRepository;
      try {
        expect((await resolveIndex(again, image, { cacheDir: join(tmp, 'node-a') })).origin).toBe('cache');
      } finally {
        await again.close();
      }
    } finally {
      await layout.close?.();
    }
  }, 120_000);

  it('clip index --push on a node whose cached index came without its windows indexes the image again and pushes it whole', async () => {
    const dir = join(tmp, 'node-repush');
    await (await node(dir)).close();
    const pushed = JSON.parse((await clip('index', ref, '--push', '--cache-dir', dir, '--json', '--no-progress')).stdout.toString()) as { published: string };
    expect(pushed.published).toMatch(/^sha256:/);
    const n = await node(join(tmp, 'node-repushed'));
    try {
      // The newest artifact is the one just pushed: a node reads every file through its windows blob.
      expect(await n.readAll()).toBeGreaterThan(3);
      expect(indexWindows(n.index).stats.source).toBeGreaterThan(0);
    } finally {
      await n.close();
    }
  }, 120_000);

  it('an index without its windows is never pushed alone (EINVAL naming the image)', async () => {
    const { eager } = splitWindows(whole);
    const repo = openImage(ref) as RegistryRepository;
    try {
      await expect(publishIndex(repo, new RegistryPusher(repo), image, eager)).rejects.toMatchObject({ code: 'EINVAL', object: image.reference });
    } finally {
      await repo.close();
    }
  });

  it('a damaged windows blob in the registry: the read that needs a damaged window is ECORRUPT naming image, layer and checkpoint; nothing is served from it', async () => {
    const { eager, windows } = splitWindows(whole);
    const lazy = new ImageIndex(eager);
    // Damage the window of the checkpoint a read of the biggest file starts from.
    let biggest = { path: '', size: 0, ino: 0 };
    for (const e of lazy.walk()) {
      const loc = (lazy.mode(e.ino) & S_IFMT) === S_IFREG ? lazy.dataLocation(e.ino) : undefined;
      if (loc && loc.size > biggest.size) biggest = { path: e.path, size: loc.size, ino: e.ino };
    }
    const loc = lazy.dataLocation(biggest.ino)!;
    // Reads are of whole chunks: the one holding the file's middle starts from the checkpoint before it.
    const cs = lazy.chunkSize(loc.layer);
    const chunkStart = Math.floor((loc.offset + (loc.size >> 1)) / cs) * cs;
    const k = lazy.checkpointIndexBefore(loc.layer, chunkStart);
    expect(lazy.needsWindow(loc.layer, k)).toBe(true);
    const place = lazy.windowPlace(loc.layer, k);
    const damaged = Buffer.from(windows!);
    damaged[place.offset + (place.length >> 1)]! ^= 0x01;
    // The artifact is consistent (its index names this blob), only the window's own digest tells.
    const crafted = Buffer.from(eager);
    createHash('sha256').update(damaged).digest().copy(crafted, section(crafted, F.Section.WindowDigests));
    reseal(crafted);
    await pushIndexArtifact(crafted, damaged);
    const n = await node(join(tmp, 'node-f'));
    try {
      expect(n.index.checksum).toBe(new ImageIndex(crafted).checksum);
      const err = await n.readAt(loc.layer, chunkStart, 1).then(() => undefined, (e: unknown) => e as Error);
      expect(err).toBeDefined();
      const text = `${err!.message} ${String((err as { cause?: Error }).cause?.message ?? '')} ${String((err as { object?: string }).object ?? '')}`;
      expect(text).toContain(`checkpoint ${k} window of layer ${lazy.layers[loc.layer]!.digest}`);
      expect(text).toContain(image.reference);
      // Nothing of it was kept: asked again, it fails again.
      await expect(n.readAt(loc.layer, chunkStart, 1)).rejects.toThrow(`checkpoint ${k} window`);
    } finally {
      await n.close();
    }
  }, 120_000);
});
