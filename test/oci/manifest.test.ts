import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/oci/digest.js';
import { parseManifest, resolveImage, type FetchedManifest, type ManifestSource } from '../../src/oci/manifest.js';
import * as mt from '../../src/oci/media-types.js';
import type { Descriptor } from '../../src/oci/types.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const desc = (mediaType: string, c: string, size = 10, extra: Partial<Descriptor> = {}): Descriptor => ({ mediaType, digest: d(c), size, ...extra });
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

/** An in-memory content store: the real parsers and resolver over blobs held by digest. */
class MemorySource implements ManifestSource {
  readonly blobs = new Map<string, { bytes: Buffer; mediaType: string }>();
  add(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Descriptor {
    const digest = sha256Digest(bytes);
    this.blobs.set(digest, { bytes, mediaType });
    return { mediaType, digest, size: bytes.length, ...extra };
  }
  async fetchManifest(x: Pick<Descriptor, 'digest'>): Promise<FetchedManifest> {
    const b = this.blobs.get(x.digest)!;
    return { bytes: b.bytes, digest: x.digest, mediaType: b.mediaType };
  }
  async readSmallBlob(x: Pick<Descriptor, 'digest'>): Promise<Buffer> {
    const b = this.blobs.get(x.digest);
    if (!b) throw new Error(`no blob ${x.digest}`);
    return b.bytes;
  }
}

describe('parseManifest', () => {
  it('takes the media type from the document, then the served type, then the shape', () => {
    const m = { schemaVersion: 2, config: desc(mt.OCI_CONFIG, 'a'), layers: [desc(mt.OCI_LAYER_GZIP, 'b')] };
    expect(parseManifest(json({ ...m, mediaType: mt.DOCKER_MANIFEST }), 'x', mt.OCI_MANIFEST).mediaType).toBe(mt.DOCKER_MANIFEST);
    expect(parseManifest(json(m), 'x', `${mt.DOCKER_MANIFEST}; charset=utf-8`).mediaType).toBe(mt.DOCKER_MANIFEST);
    expect(parseManifest(json(m), 'x').mediaType).toBe(mt.OCI_MANIFEST);
    expect(parseManifest(json({ schemaVersion: 2, manifests: [] }), 'x').kind).toBe('index');
  });

  it.each([
    ['schema 1', { schemaVersion: 1, name: 'a', fsLayers: [] }, 'EUNSUPPORTED', /schema 1/],
    ['not JSON', '{', 'ECORRUPT', /not valid JSON/],
    ['bad descriptor', { schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config: { digest: 'x' }, layers: [] }, 'ECORRUPT', /config/],
    ['bad digest', { schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config: { mediaType: 'a', digest: 'sha256:../../etc', size: 1 }, layers: [] }, 'EINVAL', /sha256:\.\.\/\.\.\/etc/],
    ['unknown type', { schemaVersion: 2, mediaType: 'application/x-thing', layers: [] }, 'EUNSUPPORTED', /application\/x-thing/],
    ['no layers', { schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config: desc(mt.OCI_CONFIG, 'a') }, 'ECORRUPT', /layers/],
  ])('%s is refused naming the manifest', (_name, doc, code, message) => {
    const bytes = typeof doc === 'string' ? Buffer.from(doc) : json(doc);
    expect(() => parseManifest(bytes, 'reg/app:tag')).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
    expect(() => parseManifest(bytes, 'reg/app:tag')).toThrow(/reg\/app:tag|sha256:\.\./);
  });
});

describe('resolveImage', () => {
  function image(src: MemorySource, diffIds: string[], layerTypes: string[], platform = { os: 'linux', architecture: 'amd64' }): Descriptor {
    const config = src.add(json({ ...platform, rootfs: { type: 'layers', diff_ids: diffIds }, config: { Env: ['X=1'] } }), mt.OCI_CONFIG);
    const layers = layerTypes.map((t, i) => desc(t, String(i + 1)));
    return src.add(json({ schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config, layers }), mt.OCI_MANIFEST, { platform });
  }
  const top = async (src: MemorySource, x: Descriptor): Promise<FetchedManifest> => src.fetchManifest(x);

  it('pairs layers with diff_ids and derives compression', async () => {
    const src = new MemorySource();
    const m = image(src, [d('c'), d('e'), d('f')], [mt.OCI_LAYER_GZIP, 'application/vnd.docker.image.rootfs.diff.tar.gzip', mt.OCI_LAYER_ZSTD]);
    const r = await resolveImage(src, { reference: 'r', location: 'l', top: await top(src, m) });
    expect(r.layers.map((l) => [l.diffId, l.compression])).toEqual([[d('c'), 'gzip'], [d('e'), 'gzip'], [d('f'), 'zstd']]);
    expect(r.platform).toEqual({ os: 'linux', architecture: 'amd64' });
  });

  it('refuses diff_ids that do not match the layers, and a config that does not match its digest', async () => {
    const src = new MemorySource();
    const m = image(src, [d('c')], [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_GZIP]);
    await expect(resolveImage(src, { reference: 'img', location: 'l', top: await top(src, m) })).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/^img: .*2 layers.*1 diff_ids/) });

    const cfgDesc = { mediaType: mt.OCI_CONFIG, digest: d('9'), size: 2 };
    src.blobs.set(d('9'), { bytes: Buffer.from('{}'), mediaType: mt.OCI_CONFIG });
    const bad = src.add(json({ schemaVersion: 2, mediaType: mt.OCI_MANIFEST, config: cfgDesc, layers: [] }), mt.OCI_MANIFEST);
    await expect(resolveImage(src, { reference: 'img', location: 'l', top: await top(src, bad) })).rejects.toMatchObject({ code: 'EDIGEST', message: expect.stringContaining(d('9')) });
  });

  it('chooses from an index by platform, and falls back to a sole entry without platform', async () => {
    const src = new MemorySource();
    const a = image(src, [d('c')], [mt.OCI_LAYER_GZIP]);
    const b = image(src, [d('e')], [mt.OCI_LAYER_GZIP], { os: 'linux', architecture: 'arm64' });
    const index = src.add(json({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: [a, b] }), mt.OCI_INDEX);
    const r = await resolveImage(src, { reference: 'r', location: 'l', top: await top(src, index), platform: { os: 'linux', architecture: 'arm64' } });
    expect(r.manifestDigest).toBe(b.digest);
    const { platform: _p, ...bare } = a;
    const sole = src.add(json({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: [bare] }), mt.OCI_INDEX);
    expect((await resolveImage(src, { reference: 'r', location: 'l', top: await top(src, sole), platform: { os: 'linux', architecture: 's390x' } })).manifestDigest).toBe(a.digest);
  });
});
