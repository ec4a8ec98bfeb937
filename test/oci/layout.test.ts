import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBlobStore, openImage } from '../../src/oci/index.js';
import { LayoutSource } from '../../src/oci/layout.js';
import * as mt from '../../src/oci/media-types.js';
import { run } from '../support/tools.js';
import { LayoutWriter, writeImage, writeIndex, type TestImage } from './images.js';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

let work: string;
let dir: string;
let one: TestImage;
let amd: TestImage;
let arm: TestImage;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'clip-oci-layout-'));
  dir = join(work, 'layout');
  const w = new LayoutWriter(dir);
  one = await writeImage(w, { layers: [{ 'x/one': 'first layer' }, { 'x/two': 'second'.repeat(5000) }], cmd: ['run'] });
  w.tag(one.manifest, 'v1');
  amd = await writeImage(w, { layers: [{ arch: 'amd64' }] });
  arm = await writeImage(w, { compression: 'zstd', layers: [{ arch: 'arm64' }], platform: { os: 'linux', architecture: 'arm64' } });
  w.tag(await writeIndex(w, [amd, arm]), 'multi');
  await w.save();
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('OCI layout source', () => {
  it('resolves a tag and reads blobs whole and by range', async () => {
    const src = openImage(`oci:${dir}:v1`);
    const r = await src.resolve();
    expect(r.reference).toBe(`oci:${dir}:v1`);
    expect(r.location).toBe(`oci:${dir}`);
    expect(r.manifestDigest).toBe(one.manifest.digest);
    expect(r.config.config?.Cmd).toEqual(['run']);
    expect(r.layers.map((l) => l.diffId)).toEqual(one.diffIds);
    const layer = r.layers[1]!.descriptor;
    expect((await readAll(await src.openBlob(layer))).equals(one.layerBytes[1]!)).toBe(true);
    const store = openBlobStore(r.location);
    expect((await readAll(await store.openBlobRange(layer, 3, 40))).equals(one.layerBytes[1]!.subarray(3, 40))).toBe(true);
    expect((await readAll(await store.openBlobRange(layer, 7, 7))).length).toBe(0);
    let counted = 0;
    await readAll(await store.openBlobRange(layer, 0, 20, { onBytes: (n) => (counted += n) }));
    expect(counted).toBe(20);
  });

  it('selects a platform from a tagged index', async () => {
    const r = await openImage(`oci:${dir}:multi`).resolve({ platform: { os: 'linux', architecture: 'arm64' } });
    expect(r.manifestDigest).toBe(arm.manifest.digest);
    expect(r.layers[0]!.compression).toBe('zstd');
    expect(r.layers[0]!.descriptor.mediaType).toBe(mt.OCI_LAYER_ZSTD);
  });

  it('refuses another platform than a single-platform image is for, and takes the one it is for', async () => {
    await expect(openImage(`oci:${dir}:v1`).resolve({ platform: { os: 'windows', architecture: 'arm64' } }))
      .rejects.toMatchObject({ code: 'EUNSUPPORTED', message: expect.stringMatching(/is for linux\/amd64 only, not windows\/arm64/) });
    expect((await openImage(`oci:${dir}:v1`).resolve({ platform: { os: 'linux', architecture: 'amd64' } })).manifestDigest).toBe(one.manifest.digest);
  });

  it('names the tags when a tag is missing or none is given among several', async () => {
    await expect(openImage(`oci:${dir}:nope`).resolve()).rejects.toMatchObject({ code: 'ENOTFOUND', message: expect.stringMatching(/"nope".*v1, multi/) });
    await expect(openImage(`oci:${dir}`).resolve()).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('v1, multi') });
  });

  it('rejects a corrupted blob with EDIGEST naming it, and a missing one with ENOTFOUND', async () => {
    const copy = join(work, 'corrupt');
    const w = new LayoutWriter(copy);
    const img = await writeImage(w, { layers: [{ f: 'data' }, { g: 'more' }] });
    w.tag(img.manifest, 't');
    await w.save();
    const src = new LayoutSource(copy, 't');
    const victim = img.layers[0]!;
    const bad = Buffer.from(img.layerBytes[0]!);
    bad[bad.length - 5]! ^= 0x01;
    await writeFile(src.blobPath(victim.digest), bad);
    await expect(readAll(await src.openBlob(victim))).rejects.toMatchObject({ code: 'EDIGEST', message: expect.stringContaining(victim.digest) });
    await unlink(src.blobPath(img.layers[1]!.digest));
    await expect(src.openBlob(img.layers[1]!)).rejects.toMatchObject({ code: 'ENOTFOUND', message: expect.stringContaining(img.layers[1]!.digest) });
  });

  it('refuses a directory that is not a layout, naming it', async () => {
    await expect(openImage(`oci:${work}`).resolve()).rejects.toMatchObject({ code: 'ENOTFOUND', message: expect.stringContaining(work) });
    const bad = join(work, 'badver');
    const w = new LayoutWriter(bad);
    await w.save();
    await writeFile(join(bad, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    await expect(openImage(`oci:${bad}`).resolve()).rejects.toMatchObject({ code: 'EUNSUPPORTED' });
  });

  it('reads a layout written by umoci', async () => {
    const u = join(work, 'umoci');
    await run('umoci', ['init', '--layout', u]);
    await run('umoci', ['new', '--image', `${u}:base`]);
    await run('umoci', ['config', '--image', `${u}:base`, '--config.env', 'FROM_UMOCI=1', '--config.workingdir', '/srv']);
    const r = await openImage(`oci:${u}:base`).resolve();
    expect(r.config.config?.Env).toContain('FROM_UMOCI=1');
    expect(r.config.config?.WorkingDir).toBe('/srv');
    expect(r.layers).toEqual([]);
    expect(r.manifestMediaType).toBe(mt.OCI_MANIFEST);
  });
});
