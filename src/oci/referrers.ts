/**
 * OCI artifacts that refer to an image (distribution spec 1.1): pushing one with a `subject`, and
 * listing an image's referrers. Registries with the referrers API answer
 * GET /v2/<name>/referrers/<digest> and index pushed subjects themselves (they say so with an
 * OCI-Subject header); for the others (distribution 2.8 among them) the client keeps the referrers
 * tag schema: an image index tagged `sha256-<hex of the subject>` listing every referrer. That tag
 * is shared with every other tool, so it is merged into, never overwritten, and re-read after each
 * write so that two pushers at once both end up in it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ClipError, isClipError } from '../util/errors.js';
import { sha256Digest } from './digest.js';
import { OCI_EMPTY, OCI_INDEX, OCI_MANIFEST } from './media-types.js';
import type { RegistryPusher } from './push.js';
import { headerValue } from './registry-client.js';
import type { RegistryRepository } from './registry-source.js';
import type { Descriptor } from './types.js';

/** A descriptor as a referrers list holds it. */
export interface ReferrerDescriptor extends Descriptor {
  artifactType?: string;
}

export interface ArtifactBlob {
  mediaType: string;
  bytes: Buffer;
  annotations?: Record<string, string>;
}

export interface Artifact {
  artifactType: string;
  /** The manifest the artifact describes. */
  subject: Pick<Descriptor, 'mediaType' | 'digest' | 'size'>;
  blobs: ArtifactBlob[];
  annotations?: Record<string, string>;
}

/** The empty JSON config ("{}") that artifacts without a config of their own use. */
export const EMPTY_CONFIG = { mediaType: OCI_EMPTY, digest: sha256Digest(Buffer.from('{}')), size: 2 } as const;

/** How often a referrers tag is re-merged when another pusher's write replaced ours. */
const TAG_MERGE_ATTEMPTS = 10;

export function referrersTag(subjectDigest: string): string {
  return subjectDigest.replace(':', '-');
}

/** Push an artifact manifest (by digest) with its blobs, and make it findable from its subject. */
export async function pushArtifact(repo: RegistryRepository, pusher: RegistryPusher, artifact: Artifact): Promise<ReferrerDescriptor> {
  await pusher.pushBlob(EMPTY_CONFIG, () => Buffer.from('{}'));
  const layers: Descriptor[] = [];
  for (const blob of artifact.blobs) {
    const desc: Descriptor = { mediaType: blob.mediaType, digest: sha256Digest(blob.bytes), size: blob.bytes.length, ...(blob.annotations ? { annotations: blob.annotations } : {}) };
    await pusher.pushBlob(desc, (start, end) => blob.bytes.subarray(start, end));
    layers.push(desc);
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: artifact.artifactType,
    config: EMPTY_CONFIG,
    layers,
    subject: { mediaType: artifact.subject.mediaType, digest: artifact.subject.digest, size: artifact.subject.size },
    ...(artifact.annotations ? { annotations: artifact.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const pushed = await pusher.pushManifestWithHeaders(bytes, OCI_MANIFEST, sha256Digest(bytes));
  const desc: ReferrerDescriptor = {
    mediaType: OCI_MANIFEST, digest: pushed.digest, size: bytes.length, artifactType: artifact.artifactType,
    ...(artifact.annotations ? { annotations: artifact.annotations } : {}),
  };
  forgetReferrers(repo, artifact.subject.digest);
  // A registry that answers OCI-Subject indexes the referrer itself; the others need the tag.
  if (!pushed.subjectHeader) await addToReferrersTag(repo, pusher, artifact.subject.digest, desc);
  return desc;
}

/** Add `desc` to the subject's referrers tag, keeping every entry already there (other tools' too). */
export async function addToReferrersTag(repo: RegistryRepository, pusher: RegistryPusher, subjectDigest: string, desc: ReferrerDescriptor): Promise<void> {
  forgetReferrers(repo, subjectDigest);
  try {
    await mergeIntoReferrersTag(repo, pusher, subjectDigest, desc);
  } finally {
    forgetReferrers(repo, subjectDigest); // a listing started while the tag was written is stale
  }
}

async function mergeIntoReferrersTag(repo: RegistryRepository, pusher: RegistryPusher, subjectDigest: string, desc: ReferrerDescriptor): Promise<void> {
  const tag = referrersTag(subjectDigest);
  for (let attempt = 0; attempt < TAG_MERGE_ATTEMPTS; attempt++) {
    const current = await readReferrersTag(repo, subjectDigest);
    if (current.manifests.some((m) => m.digest === desc.digest)) return;
    const next = { ...current.raw, schemaVersion: 2, mediaType: OCI_INDEX, manifests: [...current.manifests, desc] };
    await pusher.pushManifest(Buffer.from(JSON.stringify(next)), OCI_INDEX, tag);
    // Another pusher may have read the tag before our write and write after it (a slow one, under
    // load, long after): our entry counts as kept only once several looks, spread out, all see it.
    if (await keptThrough(repo, subjectDigest, desc.digest)) return;
  }
  throw new ClipError('ENETWORK', `referrers tag ${tag} kept losing this artifact to concurrent writers`, { object: `${repo.location}:${tag}` });
}

/** Looks at the tag after our write, this many times, with jittered pauses between. */
const TAG_STABLE_LOOKS = 3;

async function keptThrough(repo: RegistryRepository, subjectDigest: string, digest: string): Promise<boolean> {
  for (let look = 0; look < TAG_STABLE_LOOKS; look++) {
    await sleep(30 + Math.floor(Math.random() * 120) + look * 100);
    const after = await readReferrersTag(repo, subjectDigest);
    if (!after.manifests.some((m) => m.digest === digest)) return false;
  }
  return true;
}

async function readReferrersTag(repo: RegistryRepository, subjectDigest: string, signal?: AbortSignal): Promise<{ raw: Record<string, unknown>; manifests: ReferrerDescriptor[] }> {
  try {
    const got = await repo.getManifest(referrersTag(subjectDigest), signal);
    const object = `${repo.location}:${referrersTag(subjectDigest)}`;
    // Something else under that tag is not ours to replace.
    if (got.mediaType !== OCI_INDEX) throw new ClipError('ECORRUPT', `referrers tag holds a ${got.mediaType || 'manifest of no type'}, not an image index`, { object });
    const raw = parseIndexJson(got.bytes, object);
    return { raw, manifests: raw.manifests as ReferrerDescriptor[] };
  } catch (err) {
    if (isClipError(err, 'ENOTFOUND')) return { raw: {}, manifests: [] };
    throw err;
  }
}

function parseIndexJson(bytes: Buffer, object: string): Record<string, unknown> & { manifests: unknown[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ClipError('ECORRUPT', 'referrers list is not JSON', { object, cause: err });
  }
  const manifests = (raw as { manifests?: unknown })?.manifests ?? [];
  if (typeof raw !== 'object' || raw === null || !Array.isArray(manifests)) throw new ClipError('ECORRUPT', 'referrers list is not an image index', { object });
  return { ...(raw as Record<string, unknown>), manifests };
}

function isReferrer(d: unknown): d is ReferrerDescriptor {
  const x = d as ReferrerDescriptor;
  return typeof x?.digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(x.digest) && typeof x.mediaType === 'string' && Number.isSafeInteger(x.size);
}

/**
 * The referrers of a manifest, from the referrers API where the registry has it, else from the
 * tag schema; only those of `artifactType` when given. None is an empty list, not an error.
 * With `reuse`, the listing this repository object made last for the subject, if any.
 */
export async function listReferrers(repo: RegistryRepository, subjectDigest: string, opts: { artifactType?: string; signal?: AbortSignal; reuse?: boolean } = {}): Promise<ReferrerDescriptor[]> {
  // Every listing is remembered per repository object and subject; `reuse` takes the last one
  // instead of asking again: `clip mount` looks for the index and then the profile of one image
  // (two artifact types) in one listing. A push through this module forgets it.
  // A listing still on its way, made without a caller's abort signal, is taken by every caller (a
  // mount fetches its profile while it looks for its index: one listing for both).
  let listings = listed.get(repo);
  if (!listings) listed.set(repo, (listings = new Map()));
  const last = listings.get(subjectDigest);
  let all = last && (opts.reuse || (!last.settled && !last.signalled)) ? last.listing : undefined;
  if (!all) {
    const entry = { listing: fetchReferrers(repo, subjectDigest, opts.signal), settled: false, signalled: opts.signal !== undefined };
    listings.set(subjectDigest, entry);
    entry.listing.then(() => { entry.settled = true; }, () => { if (listings.get(subjectDigest) === entry) listings.delete(subjectDigest); }); // a failure is not remembered
    all = entry.listing;
  }
  const found = await all;
  return opts.artifactType ? found.filter((d) => d.artifactType === opts.artifactType) : found;
}

/** Listings made by listReferrers, per repository object (gone with it) and subject digest. */
const listed = new WeakMap<RegistryRepository, Map<string, { listing: Promise<ReferrerDescriptor[]>; settled: boolean; signalled: boolean }>>();

/** Forget what was listed for a subject, after a write that may change it. */
function forgetReferrers(repo: RegistryRepository, subjectDigest: string): void {
  listed.get(repo)?.delete(subjectDigest);
}

async function fetchReferrers(repo: RegistryRepository, subjectDigest: string, signal: AbortSignal | undefined): Promise<ReferrerDescriptor[]> {
  const object = `${repo.location}@${subjectDigest}`;
  // The tag schema's listing is asked for at once with the API's, not after its 404: on registries
  // without the API (distribution 2.8) that is a round trip less before a mount has its index. It
  // is used only when the API is missing; otherwise its answer (or failure) is dropped.
  // Cancelled once the API has answered with an index, or failed: nothing waits on it then.
  const tagCancel = new AbortController();
  const tagged = readReferrersTag(repo, subjectDigest, signal ? AbortSignal.any([signal, tagCancel.signal]) : tagCancel.signal);
  tagged.catch(() => undefined); // awaited below only when the API is missing
  let usedTag = false;
  try {
    // Unfiltered (no artifactType query): the one listing serves every type asked for.
    const res = await repo.client.request({
      method: 'GET', url: `/v2/${repo.repository}/referrers/${subjectDigest}`, scope: `repository:${repo.repository}:pull`,
      headers: { accept: OCI_INDEX }, followRedirects: true, ...(signal ? { signal } : {}),
    });
    const type = (headerValue(res.headers['content-type']) ?? '').split(';')[0]!.trim();
    if (res.statusCode === 200 && type === OCI_INDEX) {
      const text = await res.body.text();
      return parseIndexJson(Buffer.from(text), object).manifests.filter(isReferrer);
    }
    if (res.statusCode === 404 || res.statusCode === 200) {
      // No referrers API (a plain 404, or a 200 that is not an index): the tag schema.
      await res.body.dump();
      usedTag = true;
      return (await tagged).manifests.filter(isReferrer);
    }
    throw await repo.failure(res, `referrers of ${subjectDigest}`, object);
  } finally {
    if (!usedTag) tagCancel.abort();
  }
}
