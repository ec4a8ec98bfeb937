/** Push then resolve against the real docker-registry: media types, indexes, ranges, errors. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBlobStore, openImage, pushLayout, type BlobStore } from '../../src/oci/index.js';
import * as mt from '../../src/oci/media-types.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { skopeoCopy } from '../support/tools.js';
import { LayoutWriter, writeImage, writeIndex, type TestImage } from './images.js';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

let registry: TestRegistry;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'clip-oci-reg-'));
});
afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function pushed(name: string, build: (w: LayoutWriter) => Promise<void>): Promise<string> {
  const dir = join(work, name);
  const w = new LayoutWriter(dir);
  await build(w);
  await w.save();
  return dir;
}

describe('push then resolve round trip', () => {
  it.each([
    ['oci', 'gzip', mt.OCI_MANIFEST, mt.OCI_LAYER_GZIP, 'gzip'],
    ['oci', 'zstd', mt.OCI_MANIFEST, mt.OCI_LAYER_ZSTD, 'zstd'],
    ['oci', 'none', mt.OCI_MANIFEST, mt.OCI_LAYER, 'none'],
    ['docker', 'gzip', mt.DOCKER_MANIFEST, mt.DOCKER_LAYER_GZIP, 'gzip'],
  ] as const)('%s manifest with %s layers', async (flavour, compression, manifestType, layerType, expected) => {
    let img!: TestImage;
    const dir = await pushed(`${flavour}-${compression}`, async (w) => {
      img = await writeImage(w, { flavour, compression, layers: [{ 'etc/a': 'alpha\n' }, { 'etc/b': 'beta\n'.repeat(1000) }], env: ['A=1'] });
      w.tag(img.manifest, 'v1');
    });
    const target = `${registry.host}/rt/${flavour}-${compression}:v1`;
    const digest = await pushLayout(dir, 'v1', target);
    expect(digest).toBe(img.manifest.digest);

    const source = openImage(target);
    try {
      const r = await source.resolve();
      expect(r.reference).toBe(target);
      expect(r.location).toBe(`${registry.host}/rt/${flavour}-${compression}`);
      expect(r.manifestDigest).toBe(img.manifest.digest);
      expect(r.manifestMediaType).toBe(manifestType);
      expect(r.config.config?.Env).toEqual(['A=1']);
      expect(r.platform).toEqual({ os: 'linux', architecture: 'amd64' });
      expect(r.layers.map((l) => [l.descriptor.digest, l.descriptor.mediaType, l.diffId, l.compression])).toEqual(
        img.layers.map((l, i) => [l.digest, layerType, img.diffIds[i], expected]),
      );
      const blob = await readAll(await source.openBlob(r.layers[1]!.descriptor));
      expect(blob.equals(img.layerBytes[1]!)).toBe(true);
    } finally {
      await source.close?.();
    }
  });

  it('pushes a multi-platform index with its children and selects a platform', async () => {
    let amd!: TestImage;
    let arm!: TestImage;
    let armv7!: TestImage;
    let indexDigest = '';
    const dir = await pushed('multi', async (w) => {
      amd = await writeImage(w, { layers: [{ arch: 'amd64' }], platform: { os: 'linux', architecture: 'amd64' } });
      arm = await writeImage(w, { layers: [{ arch: 'arm64' }], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      armv7 = await writeImage(w, { flavour: 'docker', layers: [{ arch: 'arm' }], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
      const index = await writeIndex(w, [amd, arm, armv7]);
      indexDigest = index.digest;
      w.tag(index, 'multi');
    });
    const target = `${registry.host}/rt/multi:latest`;
    expect(await pushLayout(dir, 'multi', target)).toBe(indexDigest);

    const source = openImage(`${registry.host}/rt/multi`);
    try {
      const a = await source.resolve({ platform: { os: 'linux', architecture: 'arm64' } });
      expect(a.manifestDigest).toBe(arm.manifest.digest);
      expect(a.platform).toMatchObject({ os: 'linux', architecture: 'arm64' });
      const x = await source.resolve({ platform: { os: 'linux', architecture: 'amd64' } });
      expect(x.manifestDigest).toBe(amd.manifest.digest);
      const v7 = await source.resolve({ platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
      expect(v7.manifestMediaType).toBe(mt.DOCKER_MANIFEST);
      const none = await rejection(source.resolve({ platform: { os: 'linux', architecture: 's390x' } }));
      expect(none.code).toBe('EUNSUPPORTED');
      expect(none.message).toMatch(/linux\/s390x.*linux\/amd64, linux\/arm64\/v8, linux\/arm\/v7/);
    } finally {
      await source.close?.();
    }
    // The same image pinned by the index digest resolves the same child.
    const pinned = openImage(`${registry.host}/rt/multi@${indexDigest}`);
    expect((await pinned.resolve({ platform: { os: 'linux', architecture: 'amd64' } })).manifestDigest).toBe(amd.manifest.digest);
    await pinned.close?.();
  });

  it('reads an image that skopeo copied out of the registry into a layout', async () => {
    const dir = join(work, 'skopeo-out');
    await skopeoCopy(`docker://${registry.host}/rt/oci-gzip:v1`, `oci:${dir}:copied`, { preserveDigests: true });
    const fromLayout = await openImage(`oci:${dir}:copied`).resolve();
    const fromRegistry = openImage(`${registry.host}/rt/oci-gzip:v1`);
    const r = await fromRegistry.resolve();
    await fromRegistry.close?.();
    expect(fromLayout.manifestDigest).toBe(r.manifestDigest);
    expect(fromLayout.layers).toEqual(r.layers);
  });
});

describe('blobs and errors', () => {
  let img: TestImage;
  const repo = 'blobs/app';

  beforeAll(async () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
    const dir = await pushed('blobs', async (w) => {
      img = await writeImage(w, { compression: 'none', layers: [{ big }] });
      w.tag(img.manifest, 'v1');
    });
    await pushLayout(dir, 'v1', `${registry.host}/${repo}:v1`, { chunkSize: 64 * 1024 }); // several PATCH chunks
  });

  it('serves byte ranges (206) of a blob opened from its recorded location', async () => {
    const store = openBlobStore(`${registry.host}/${repo}`);
    const layer = img.layers[0]!;
    for (const [start, end] of [[0, 10], [1000, 70_000], [layer.size - 5, layer.size], [500, 500]] as const) {
      const got = await readAll(await store.openBlobRange(layer, start, end));
      expect(got.equals(img.layerBytes[0]!.subarray(start, end))).toBe(true);
    }
    await expect(store.openBlobRange(layer, 10, layer.size + 1)).rejects.toThrow(/bad range/);
    await store.close?.();
  });

  it('a blob stream destroyed before it is read releases its response: close() returns at once', async () => {
    const layer = img.layers[0]!;
    for (const open of [(s: BlobStore) => s.openBlob(layer), (s: BlobStore) => s.openBlobRange(layer, 1000, 200_000)]) {
      const store = openBlobStore(`${registry.host}/${repo}`);
      (await open(store)).destroy(); // as a reader that fails before its first read does
      const closed = store.close!().then(() => 'closed');
      expect(await Promise.race([closed, sleep(15_000).then(() => 'still waiting')])).toBe('closed');
    }
  });

  it('verifies a pinned manifest digest and names what is missing', async () => {
    const source = openImage(`${registry.host}/${repo}@${img.manifest.digest}`);
    expect((await source.resolve()).manifestDigest).toBe(img.manifest.digest);
    const ghost = `sha256:${'0'.repeat(64)}`;
    const err = await rejection(source.openBlob({ digest: ghost, size: 10 }));
    expect(err.code).toBe('ENOTFOUND');
    expect(err.message).toContain(ghost);
    expect(err.message).toContain(`${registry.host}/${repo}`);
    await source.close?.();

    const noManifest = openImage(`${registry.host}/${repo}:nope`);
    const e2 = await rejection(noManifest.resolve());
    expect(e2.code).toBe('ENOTFOUND');
    expect(e2.message).toContain(`${registry.host}/${repo}:nope`);
    await noManifest.close?.();
  });

  it('refuses an unknown layer media type by name', async () => {
    const dir = await pushed('weird', async (w) => {
      const i = await writeImage(w, { layers: [{ f: 'x' }] });
      const manifest = { schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config: i.config, layers: [{ ...i.layers[0]!, mediaType: 'application/x-weird-layer' }] };
      w.tag(await w.addBlob(Buffer.from(JSON.stringify(manifest)), mt.OCI_MANIFEST), 'w');
    });
    await pushLayout(dir, 'w', `${registry.host}/weird/app:w`);
    const source = openImage(`${registry.host}/weird/app:w`);
    const err = await rejection(source.resolve());
    expect(err.code).toBe('EUNSUPPORTED');
    expect(err.message).toContain('application/x-weird-layer');
    await source.close?.();
  });
});
