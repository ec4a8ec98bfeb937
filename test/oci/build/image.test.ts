import { createHash } from 'node:crypto';
import { readFile, readdir, mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blobPath, REF_NAME, seededBytes, writeImage, writeImageIndex, OCI, DOCKER, type LayerEntry, type BuiltImage,
} from '../../../src/oci/build/index.js';
import { isClipError } from '../../../src/util/errors.js';
import { skipUnlessRoot } from '../../support/env.js';
import { gnuTar, hardlinkGroups, run, skopeoCopy, skopeoInspect, snapshotTree, umociUnpack } from '../../support/tools.js';

const T = 1_700_000_000;
const CAP = Buffer.from([0x01, 0, 0, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

let work: string;
beforeAll(async () => { work = await mkdtemp(join(tmpdir(), 'clip-build-')); });
afterAll(async () => { await rm(work, { recursive: true, force: true }); });

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const lower: LayerEntry[] = [
  { type: 'dir', path: 'etc', mtime: { sec: T } },
  { type: 'file', path: 'etc/conf', content: 'v1\n', mode: 0o640, uid: 10, gid: 20, mtime: { sec: T, nsec: 42 } },
  { type: 'file', path: 'etc/data', content: seededBytes('image-test', 100_000), mtime: { sec: T } },
  { type: 'dir', path: 'bin', mtime: { sec: T } },
  { type: 'file', path: 'bin/suid', content: '#!/bin/sh\n', mode: 0o4755, xattrs: { 'security.capability': CAP, 'user.k': 'v' }, mtime: { sec: T } },
  { type: 'char', path: 'null', major: 1, minor: 3, mode: 0o666, mtime: { sec: T } },
  { type: 'fifo', path: 'fifo', mtime: { sec: T } },
];
const upper: LayerEntry[] = [
  { type: 'file', path: 'etc/conf', content: 'v2\n', mode: 0o644, mtime: { sec: T } },
  { type: 'hardlink', path: 'etc/data-link', target: 'etc/data', mtime: { sec: T } },
  { type: 'symlink', path: 'etc/conf-link', target: 'conf', mtime: { sec: T } },
];
const config = { Env: ['A=1', 'PATH=/bin'], Entrypoint: ['/bin/sh'], Cmd: ['-c', 'true'], WorkingDir: '/etc' };

async function decompressed(layoutDir: string, digest: string, compression: string): Promise<Buffer> {
  const path = blobPath(layoutDir, digest);
  if (compression === 'none') return readFile(path);
  const { stdout } = await run('bash', ['-c', `${compression === 'gzip' ? 'gzip' : 'zstd'} -dc < "$1" | base64 -w0`, 'x', path]);
  return Buffer.from(stdout, 'base64');
}

describe('writeImage (OCI media types)', () => {
  let layout: string;
  let img: BuiltImage;
  beforeAll(async () => {
    layout = join(work, 'oci');
    img = await writeImage(layout, {
      tag: 'v1', config,
      layers: [{ entries: lower, compression: 'gzip', createdBy: 'lower' }, { entries: upper, compression: 'zstd' }, { entries: [{ type: 'file', path: 'plain', content: 'p' }], compression: 'none' }],
    });
  });

  it('writes a layout whose every blob is named by its sha256', async () => {
    expect(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const names = await readdir(join(layout, 'blobs', 'sha256'));
    expect(names.length).toBe(5); // 3 layers, config, manifest
    for (const name of names) expect(sha256(await readFile(join(layout, 'blobs', 'sha256', name)))).toBe(`sha256:${name}`);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests).toEqual([{ mediaType: OCI.manifest, digest: img.manifest.digest, size: img.manifest.size, annotations: { [REF_NAME]: 'v1' } }]);
  });

  it('records diff_ids that hash the uncompressed layers, and the right media types', async () => {
    const manifest = JSON.parse(img.manifestBytes.toString());
    const cfg = JSON.parse(img.configBytes.toString());
    expect(manifest.mediaType).toBe(OCI.manifest);
    expect(manifest.config).toEqual({ mediaType: OCI.config, digest: img.config.digest, size: img.config.size });
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([OCI.layer.gzip, OCI.layer.zstd, OCI.layer.none]);
    for (const [i, layer] of img.layers.entries()) {
      const tar = await decompressed(layout, layer.descriptor.digest, layer.compression);
      expect(sha256(tar)).toBe(cfg.rootfs.diff_ids[i]);
      expect(layer.diffId).toBe(cfg.rootfs.diff_ids[i]);
      expect(tar.length).toBe(layer.uncompressedSize);
    }
    expect(cfg.config).toEqual(config);
    expect(cfg.history).toHaveLength(3);
    expect(cfg.history[0].created_by).toBe('lower');
    expect(cfg).toMatchObject({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers' } });
  });

  it('is read by skopeo as the same image', async () => {
    const info = JSON.parse(await skopeoInspect(`oci:${layout}:v1`));
    expect(info.Digest).toBe(img.manifest.digest);
    expect(info.Layers).toEqual(img.layers.map((l) => l.descriptor.digest));
    expect(info.Env).toEqual(config.Env);
    expect(await skopeoInspect(`oci:${layout}:v1`, true)).toBe(img.manifestBytes.toString());
  });

  it('gives the same digests when built again', async () => {
    const again = await writeImage(join(work, 'oci-again'), {
      config,
      layers: [{ entries: lower, compression: 'gzip', createdBy: 'lower' }, { entries: upper, compression: 'zstd' }, { entries: [{ type: 'file', path: 'plain', content: 'p' }], compression: 'none' }],
    });
    expect(again.manifest.digest).toBe(img.manifest.digest);
  });
});

describe.skipIf(skipUnlessRoot())('umoci unpack of a built image', () => {
  it('yields exactly the tree the entries describe', async () => {
    const layout = join(work, 'umoci');
    await writeImage(layout, { tag: 't', layers: [{ entries: lower }, { entries: upper, compression: 'none' }] });
    const tree = await snapshotTree(await umociUnpack(layout, 't', join(work, 'umoci-bundle')));
    expect([...tree.keys()]).toEqual(['bin', 'bin/suid', 'etc', 'etc/conf', 'etc/conf-link', 'etc/data', 'etc/data-link', 'fifo', 'null']);
    expect(tree.get('etc/conf')).toMatchObject({ type: 'file', mode: 0o644, uid: 0, size: 3, sha256: createHash('sha256').update('v2\n').digest('hex') });
    expect(tree.get('bin/suid')).toMatchObject({ mode: 0o4755, xattrs: { 'security.capability': CAP.toString('hex'), 'user.k': Buffer.from('v').toString('hex') } });
    expect(tree.get('null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 });
    expect(tree.get('fifo')!.type).toBe('fifo');
    expect(tree.get('etc/conf-link')!.linkTarget).toBe('conf');
    expect(tree.get('etc/data')!.sha256).toBe(createHash('sha256').update(seededBytes('image-test', 100_000)).digest('hex'));
    expect(hardlinkGroups(tree)).toEqual([['etc/data', 'etc/data-link']]);
  });
});

describe('raw tar layers', () => {
  it('keeps a GNU tar layer byte for byte', async () => {
    const src = join(work, 'gnu-src');
    const long = `${'n'.repeat(150)}.txt`;
    await mkdir(src);
    await writeFile(join(src, long), 'gnu\n');
    const tarPath = join(work, 'gnu.tar');
    await gnuTar(['--format=gnu', '-cf', tarPath, '-C', src, long]);
    const layout = join(work, 'raw');
    const img = await writeImage(layout, { tag: 'raw', layers: [{ tar: { path: tarPath } }, { tar: Buffer.from(await readFile(tarPath)), compression: 'none' }] });
    const tar = await readFile(tarPath);
    expect(img.layers.map((l) => l.diffId)).toEqual([sha256(tar), sha256(tar)]);
    expect((await decompressed(layout, img.layers[0]!.descriptor.digest, 'gzip')).equals(tar)).toBe(true);
    expect(await gnuTar(['-tf', blobPath(layout, img.layers[1]!.descriptor.digest)])).toBe(`${long}\n`);
  });
});

describe('Docker media types and indexes', () => {
  it('writes v2s2 manifests and a manifest list with platforms', async () => {
    const layout = join(work, 'docker');
    const amd = await writeImage(layout, { mediaTypes: 'docker', tag: 'amd', layers: [{ entries: lower }] });
    const arm = await writeImage(layout, { mediaTypes: 'docker', tag: 'arm', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [{ entries: upper, compression: 'none' }] });
    const list = await writeImageIndex(layout, [amd, arm], { tag: 'list' });
    const manifest = JSON.parse(amd.manifestBytes.toString());
    expect(manifest).toMatchObject({ schemaVersion: 2, mediaType: DOCKER.manifest, config: { mediaType: DOCKER.config } });
    expect(manifest.layers[0].mediaType).toBe(DOCKER.layer.gzip);
    expect(JSON.parse(arm.manifestBytes.toString()).layers[0].mediaType).toBe(DOCKER.layer.none);
    const doc = JSON.parse(list.bytes.toString());
    expect(doc.mediaType).toBe(DOCKER.index);
    expect(doc.manifests).toEqual([
      { mediaType: DOCKER.manifest, digest: amd.manifest.digest, size: amd.manifest.size, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: DOCKER.manifest, digest: arm.manifest.digest, size: arm.manifest.size, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    expect(sha256(await readFile(blobPath(layout, list.descriptor.digest)))).toBe(list.descriptor.digest);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests.map((d: { annotations: Record<string, string> }) => d.annotations[REF_NAME])).toEqual(['amd', 'arm', 'list']);
    expect(index.manifests[2].mediaType).toBe(DOCKER.index);
  });

  it('writes an OCI index that skopeo copies with all its platforms', async () => {
    const layout = join(work, 'oci-index');
    const a = await writeImage(layout, { layers: [{ entries: [{ type: 'file', path: 'a', content: 'amd64' }] }] });
    const b = await writeImage(layout, { platform: { os: 'linux', architecture: 'arm64' }, layers: [{ entries: [{ type: 'file', path: 'a', content: 'arm64' }] }] });
    const idx = await writeImageIndex(layout, [a, b], { tag: 'multi' });
    expect(await skopeoInspect(`oci:${layout}:multi`, true)).toBe(idx.bytes.toString());
    await skopeoCopy(`oci:${layout}:multi`, `oci:${join(work, 'oci-index-copy')}:multi`, { all: true, preserveDigests: true });
    expect(await skopeoInspect(`oci:${join(work, 'oci-index-copy')}:multi`, true)).toBe(idx.bytes.toString());
  });
});

describe('tags and errors', () => {
  it('moves a tag to its new image instead of listing it twice', async () => {
    const layout = join(work, 'retag');
    await writeImage(layout, { tag: 'x', layers: [{ entries: [{ type: 'file', path: 'f', content: '1' }] }] });
    const second = await writeImage(layout, { tag: 'x', layers: [{ entries: [{ type: 'file', path: 'f', content: '2' }] }] });
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].digest).toBe(second.manifest.digest);
  });

  it('rejects a bad tag and leaves no temp files after a failed layer', async () => {
    const layout = join(work, 'errors');
    const bad = await writeImage(layout, { tag: 'no spaces', layers: [] }).catch((e: unknown) => e);
    expect(isClipError(bad, 'EINVAL')).toBe(true);
    const missing = await writeImage(layout, { layers: [{ entries: [{ type: 'file', path: 'f', content: { path: join(work, 'absent') } }] }] }).catch((e: unknown) => e);
    expect(isClipError(missing, 'ENOTFOUND')).toBe(true);
    expect((await readdir(join(layout, 'blobs', 'sha256'))).filter((n) => n.startsWith('.tmp'))).toEqual([]);
  });
});
