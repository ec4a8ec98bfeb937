/**
 * Artifacts with a subject on the real docker-registry 2.8, which has no referrers API: pushing one
 * keeps the referrers tag schema, merged with what other tools put there, under concurrent pushers.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openImage, RegistryClient, RegistryPusher, RegistryRepository, type ResolvedImage } from '../../src/oci/index.js';
import { EMPTY_CONFIG, listReferrers, pushArtifact, referrersTag } from '../../src/oci/referrers.js';
import { sha256Digest } from '../../src/oci/digest.js';
import * as mt from '../../src/oci/media-types.js';
import { pushFixture } from '../support/fixtures/index.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

let registry: TestRegistry;
let repo: RegistryRepository;
let pusher: RegistryPusher;
let image: ResolvedImage;

beforeAll(async () => {
  registry = await startRegistry();
  const ref = await pushFixture('basic', registry.host);
  const src = openImage(ref);
  image = await src.resolve();
  await src.close?.();
  repo = new RegistryRepository(new RegistryClient(registry.host), 'fixtures/basic');
  pusher = new RegistryPusher(repo);
});
afterAll(async () => {
  await repo?.close();
  await registry?.stop();
});

const subject = (): { mediaType: string; digest: string; size: number } => ({ mediaType: image.manifestMediaType, digest: image.manifestDigest, size: image.manifestBytes.length });

describe('artifacts that refer to an image', () => {
  it('an image with no referrers has an empty list, not an error', async () => {
    expect(await listReferrers(repo, sha256Digest(Buffer.from('nothing refers to this')))).toEqual([]);
  });

  it("keeps another tool's referrers when it adds its own, and filters by artifact type", async () => {
    // Another tool (as oras does it, by raw requests): its artifact, then the tag index listing it.
    const theirBlob = Buffer.from('a signature, say');
    await pusher.pushBlob({ digest: sha256Digest(theirBlob), size: theirBlob.length }, () => theirBlob);
    await pusher.pushBlob(EMPTY_CONFIG, () => Buffer.from('{}'));
    const theirManifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: mt.OCI_MANIFEST, artifactType: 'application/vnd.example.signature.v1', config: EMPTY_CONFIG,
      layers: [{ mediaType: 'application/octet-stream', digest: sha256Digest(theirBlob), size: theirBlob.length }], subject: subject(),
    }));
    const theirs = await pusher.pushManifest(theirManifest, mt.OCI_MANIFEST, sha256Digest(theirManifest));
    const tagIndex = { schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: [{ mediaType: mt.OCI_MANIFEST, digest: theirs, size: theirManifest.length, artifactType: 'application/vnd.example.signature.v1' }], annotations: { 'example.keep': 'me' } };
    await pusher.pushManifest(Buffer.from(JSON.stringify(tagIndex)), mt.OCI_INDEX, referrersTag(image.manifestDigest));

    const ours = await pushArtifact(repo, pusher, {
      artifactType: 'application/vnd.example.index.v1', subject: subject(),
      blobs: [{ mediaType: 'application/vnd.example.index.v1+gzip', bytes: Buffer.from('index bytes') }],
      annotations: { 'example.version': '1' },
    });
    const all = await listReferrers(repo, image.manifestDigest);
    expect(all.map((d) => d.digest).sort()).toEqual([theirs, ours.digest].sort());
    expect(await listReferrers(repo, image.manifestDigest, { artifactType: 'application/vnd.example.index.v1' })).toEqual([expect.objectContaining({ digest: ours.digest, annotations: { 'example.version': '1' } })]);
    // The tag index kept the other tool's own fields.
    const tag = JSON.parse((await repo.getManifest(referrersTag(image.manifestDigest))).bytes.toString()) as Record<string, unknown>;
    expect(tag.annotations).toEqual({ 'example.keep': 'me' });
    // The artifact manifest names its subject and type, and its blob can be read back by digest.
    const pushed = JSON.parse((await repo.getManifest(ours.digest)).bytes.toString()) as { subject: { digest: string }; artifactType: string; layers: { digest: string; size: number }[] };
    expect(pushed.subject.digest).toBe(image.manifestDigest);
    expect(pushed.artifactType).toBe('application/vnd.example.index.v1');
    expect((await repo.readSmallBlob(pushed.layers[0]!)).toString()).toBe('index bytes');

    // Pushing the same artifact again adds no duplicate.
    await pushArtifact(repo, pusher, {
      artifactType: 'application/vnd.example.index.v1', subject: subject(),
      blobs: [{ mediaType: 'application/vnd.example.index.v1+gzip', bytes: Buffer.from('index bytes') }],
      annotations: { 'example.version': '1' },
    });
    expect((await listReferrers(repo, image.manifestDigest)).length).toBe(2);
  });

  it('six pushers at once all end up in the referrers tag', async () => {
    const before = (await listReferrers(repo, image.manifestDigest)).length;
    const pushed = await Promise.all(Array.from({ length: 6 }, (_, k) => {
      const own = new RegistryRepository(new RegistryClient(registry.host), 'fixtures/basic');
      return pushArtifact(own, new RegistryPusher(own), {
        artifactType: 'application/vnd.example.concurrent.v1', subject: subject(),
        blobs: [{ mediaType: 'application/octet-stream', bytes: Buffer.from(`pusher ${k}`) }],
      }).finally(() => own.close());
    }));
    const listed = await listReferrers(repo, image.manifestDigest, { artifactType: 'application/vnd.example.concurrent.v1' });
    expect(listed.map((d) => d.digest).sort()).toEqual(pushed.map((d) => d.digest).sort());
    expect((await listReferrers(repo, image.manifestDigest)).length).toBe(before + 6);
  });

  it('with reuse, a listing this repository object made is taken again; a push through it forgets it', async () => {
    const fresh = await listReferrers(repo, image.manifestDigest);
    // Another pusher (another repository object) adds one: a reused listing does not see it yet...
    const own = new RegistryRepository(new RegistryClient(registry.host), 'fixtures/basic');
    const added = await pushArtifact(own, new RegistryPusher(own), {
      artifactType: 'application/vnd.example.reuse.v1', subject: subject(), blobs: [{ mediaType: 'application/octet-stream', bytes: Buffer.from('reuse') }],
    }).finally(() => own.close());
    expect(await listReferrers(repo, image.manifestDigest, { reuse: true })).toEqual(fresh);
    expect(await listReferrers(repo, image.manifestDigest, { artifactType: 'application/vnd.example.reuse.v1', reuse: true })).toEqual([]);
    // ...a listing without reuse asks the registry, and is what the next reuse takes.
    expect((await listReferrers(repo, image.manifestDigest)).map((d) => d.digest)).toContain(added.digest);
    expect((await listReferrers(repo, image.manifestDigest, { artifactType: 'application/vnd.example.reuse.v1', reuse: true })).map((d) => d.digest)).toEqual([added.digest]);
    // A push through this repository object forgets what it listed.
    const ours = await pushArtifact(repo, pusher, {
      artifactType: 'application/vnd.example.reuse.v1', subject: subject(), blobs: [{ mediaType: 'application/octet-stream', bytes: Buffer.from('reuse, ours') }],
    });
    expect((await listReferrers(repo, image.manifestDigest, { artifactType: 'application/vnd.example.reuse.v1', reuse: true })).map((d) => d.digest).sort()).toEqual([added.digest, ours.digest].sort());
  });

  it('asks for the referrers tag at once with the referrers API, not after its 404, and takes the tag when the API is missing', async () => {
    await pushArtifact(repo, pusher, { artifactType: 'application/vnd.example.at-once.v1', subject: subject(), blobs: [] });
    const proxy = await startFaultProxy(registry.host);
    // Headers waited for longer than the wait below: a client that gave up on the held answer would
    // ask again, and then the tag after the retry's 404.
    const via = new RegistryRepository(new RegistryClient(proxy.host, { timeouts: { headersMs: 120_000 } }), 'fixtures/basic');
    let release = (): void => undefined;
    try {
      proxy.inject({ kind: 'hold', until: new Promise<void>((r) => (release = r)), match: (r) => r.path.includes('/referrers/'), times: 100 });
      const listing = listReferrers(via, image.manifestDigest);
      // The API's answer is held at the proxy: the tag's request must go out meanwhile.
      const tagPath = `/v2/fixtures/basic/manifests/${referrersTag(image.manifestDigest)}`;
      await vi.waitFor(() => expect(proxy.count((r) => r.path === tagPath)).toBe(1), { timeout: 20_000, interval: 20 });
      release();
      const listed = await listing;
      expect(listed.map((d) => d.artifactType)).toContain('application/vnd.example.at-once.v1');
      expect(listed).toEqual(await listReferrers(repo, image.manifestDigest));
    } finally {
      release();
      await via.close();
      await proxy.stop();
    }
  });

  it('takes the referrers API\'s answer where the registry has one, not the tag asked for beside it', async () => {
    await pushArtifact(repo, pusher, { artifactType: 'application/vnd.example.tagged.v1', subject: subject(), blobs: [] });
    const proxy = await startFaultProxy(registry.host);
    const via = new RegistryRepository(new RegistryClient(proxy.host), 'fixtures/basic');
    try {
      const fromApi = { mediaType: mt.OCI_MANIFEST, digest: sha256Digest(Buffer.from('listed by the API')), size: 17, artifactType: 'application/vnd.example.api.v1' };
      proxy.inject({
        kind: 'reply', status: 200, headers: { 'content-type': mt.OCI_INDEX }, match: (r) => r.path.includes('/referrers/'),
        body: JSON.stringify({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: [fromApi] }),
      });
      expect(await listReferrers(via, image.manifestDigest)).toEqual([fromApi]);
    } finally {
      await via.close();
      await proxy.stop();
    }
  });

  it('a referrers tag that holds something else is an error naming it, and is never overwritten', async () => {
    const subjectDigest = sha256Digest(Buffer.from('a subject whose tag holds an image'));
    await pusher.pushManifest(image.manifestBytes, image.manifestMediaType, referrersTag(subjectDigest));
    const named = { code: 'ECORRUPT', message: expect.stringContaining(`${referrersTag(subjectDigest)}: referrers tag holds a ${image.manifestMediaType}`) };
    await expect(listReferrers(repo, subjectDigest)).rejects.toMatchObject(named);
    const other = { mediaType: mt.OCI_MANIFEST, digest: subjectDigest, size: 10 };
    await expect(pushArtifact(repo, pusher, { artifactType: 'application/vnd.example.x', subject: other, blobs: [] })).rejects.toMatchObject(named);
    expect((await repo.getManifest(referrersTag(subjectDigest))).digest).toBe(image.manifestDigest);
  });
});
