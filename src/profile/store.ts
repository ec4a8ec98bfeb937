/**
 * Where profiles are kept and found, each keyed by the image's manifest digest and checked against
 * the index it was recorded on: the local cache (CACHE_DIR/profiles/), the shared cache (Redis key
 * clip:profile:<manifest digest>), and the registry (an artifact referring to the image manifest,
 * next to the index artifact). A profile is a hint: one that is damaged, of another index or
 * another image is logged and skipped, never an error.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
// The registry code (referrers, HTTP) loads only when the registry is asked: a node server serving
// from its caches never loads it (docs/server.md).
import { publishedForm } from '../index/published.js';
import type { ReferrerDescriptor } from '../oci/referrers.js';
import type { RegistryPusher } from '../oci/push.js';
import type { RegistryRepository } from '../oci/registry-source.js';
import { ensurePrivateDir, writePrivateFile } from '../storage/cache-dir.js';
import type { RedisChunkCache } from '../storage/remote-cache.js';
import { digestHex } from '../storage/types.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { decodeProfile, MAX_PROFILE_BYTES, PROFILE_VERSION, type StartupProfile } from './format.js';

export const PROFILE_ARTIFACT_TYPE = 'application/vnd.clipfs.profile.v1';
export const PROFILE_BLOB_TYPE = 'application/vnd.clipfs.profile.v1';
/** Annotation on the artifact: the digest of the index the profile was recorded on. */
export const PROFILE_INDEX_ANNOTATION = 'dev.clipfs.profile.index';
export const PROFILE_FORMAT_ANNOTATION = 'dev.clipfs.profile.format';

export type ProfileOrigin = 'cache' | 'shared' | 'registry';

/** The digest a profile names its index by: sha256 of the index file's bytes as published (without windows). */
export function indexDigestOf(indexBytes: Buffer): string {
  return `sha256:${createHash('sha256').update(publishedForm(indexBytes)).digest('hex')}`;
}

export function localProfilePath(cacheDir: string, manifestDigest: string): string {
  return path.join(cacheDir, 'profiles', `${digestHex(manifestDigest, 'manifest digest')}.profile`);
}

export function sharedProfileKey(manifestDigest: string): string {
  return `clip:profile:${manifestDigest}`;
}

/** What a profile must match to be used for a mount. */
export interface ProfileTarget {
  manifestDigest: string;
  indexDigest: string;
  /** The index's layers (diff_ids), in order. */
  layers: string[];
}

/** The profile in `bytes` if it was recorded on exactly this index, else ECORRUPT naming `from`. */
export function profileFor(target: ProfileTarget, bytes: Buffer, from: string): StartupProfile {
  const p = decodeProfile(bytes, from);
  const stale = (what: string): ClipError => new ClipError('ECORRUPT', `profile is stale or of another image: ${what}`, { object: from });
  if (p.manifestDigest !== target.manifestDigest) throw stale(`manifest ${p.manifestDigest}, not ${target.manifestDigest}`);
  if (p.indexDigest !== target.indexDigest) throw stale(`recorded on index ${p.indexDigest}, this one is ${target.indexDigest}`);
  if (p.layers.length !== target.layers.length || p.layers.some((l, i) => l !== target.layers[i])) throw stale('other layers');
  return p;
}

export interface FindProfileOptions {
  cacheDir: string;
  /** The registry's latest profile, fetched ahead (fetchLatestProfile): tried before asking the registry. */
  early?: Promise<FetchedProfile | undefined>;
  remote?: RedisChunkCache;
  /** The image's repository, asked for only when neither cache has a profile (none: not a registry image). */
  repo?: () => Promise<RegistryRepository | undefined>;
  logger?: Logger;
  signal?: AbortSignal;
  /** Take the referrers listing this repository object made last (the index lookup's) instead of asking again. */
  reuseListing?: boolean;
}

export interface FoundProfile {
  profile: StartupProfile;
  bytes: Buffer;
  origin: ProfileOrigin;
  /** Where it was found (a path, a key, an artifact). */
  from: string;
}

/** The first usable profile for `target`: local cache, shared cache, registry. Never throws. */
export async function findProfile(target: ProfileTarget, opts: FindProfileOptions): Promise<FoundProfile | undefined> {
  const log = opts.logger ?? silentLogger;
  const tryBytes = (bytes: Buffer, origin: ProfileOrigin, from: string): FoundProfile | undefined => {
    try {
      return { profile: profileFor(target, bytes, from), bytes, origin, from };
    } catch (err) {
      log.warn({ profile: from, err: (err as Error).message }, 'profile: unusable, ignored');
      return undefined;
    }
  };
  const file = localProfilePath(opts.cacheDir, target.manifestDigest);
  const local = await readFile(file).catch(() => undefined);
  const fromCache = local && tryBytes(local, 'cache', file);
  if (fromCache) return fromCache;
  if (opts.remote?.available && !opts.signal?.aborted) {
    const key = sharedProfileKey(target.manifestDigest);
    const shared = await opts.remote.fetchValue(key).catch(() => null);
    const found = shared && tryBytes(shared, 'shared', `shared cache ${key}`);
    if (found) return found;
  }
  const early = opts.early && !opts.signal?.aborted ? await opts.early : undefined;
  // One its artifact says was recorded on another index is passed over quietly (the search below
  // tries those of this index first); any other is checked as every profile is.
  const fromEarly = early && (early.indexDigest === undefined || early.indexDigest === target.indexDigest) ? tryBytes(early.bytes, 'registry', early.from) : undefined;
  if (fromEarly) return fromEarly;
  const repo = opts.repo && !opts.signal?.aborted ? await opts.repo().catch(() => undefined) : undefined;
  if (repo && !opts.signal?.aborted) {
    const reuse = opts.reuseListing === true || opts.early !== undefined;
    const found = await findPublishedProfile(repo, target, log, opts.signal, reuse, early?.from).catch((err: unknown) => {
      log.warn({ image: target.manifestDigest, err: (err as Error).message }, 'profile: cannot look in the registry');
      return undefined;
    });
    if (found) return found;
  }
  return undefined;
}

/** `tried`: an artifact fetched ahead and found unusable, not fetched again. */
async function findPublishedProfile(repo: RegistryRepository, target: ProfileTarget, log: Logger, signal: AbortSignal | undefined, reuse: boolean, tried?: string): Promise<FoundProfile | undefined> {
  const listed = await listProfiles(repo, target.manifestDigest, signal, reuse);
  // Those recorded on this index first, the last pushed first; the others are tried (and logged) after.
  const ordered = listed.sort((a, b) => Number(b.annotations?.[PROFILE_INDEX_ANNOTATION] === target.indexDigest) - Number(a.annotations?.[PROFILE_INDEX_ANNOTATION] === target.indexDigest));
  for (const desc of ordered) {
    const object = `${repo.location}@${desc.digest}`;
    if (object === tried) continue;
    try {
      const bytes = await fetchArtifactProfile(repo, desc, object);
      return { profile: profileFor(target, bytes, object), bytes, origin: 'registry', from: object };
    } catch (err) {
      log.warn({ artifact: object, err: (err as Error).message }, 'profile: published profile unusable, ignored');
    }
  }
  return undefined;
}

/** The profile artifacts referring to a manifest, the last pushed first. */
async function listProfiles(repo: RegistryRepository, manifestDigest: string, signal: AbortSignal | undefined, reuse: boolean): Promise<ReferrerDescriptor[]> {
  const { listReferrers } = await import('../oci/referrers.js');
  const listed = await listReferrers(repo, manifestDigest, { artifactType: PROFILE_ARTIFACT_TYPE, ...(signal ? { signal } : {}), ...(reuse ? { reuse } : {}) });
  return [...listed].reverse(); // the tag schema appends
}

/** The profile blob of one artifact (not decoded: profileFor checks it). */
async function fetchArtifactProfile(repo: RegistryRepository, desc: ReferrerDescriptor, object: string, signal?: AbortSignal): Promise<Buffer> {
  const manifest = JSON.parse((await repo.getManifest(desc.digest, signal)).bytes.toString('utf8')) as { layers?: { mediaType?: string; digest?: string; size?: number }[] };
  const blob = manifest.layers?.find((l) => l.mediaType === PROFILE_BLOB_TYPE);
  if (!blob || typeof blob.digest !== 'string' || !Number.isSafeInteger(blob.size) || blob.size! > MAX_PROFILE_BYTES) {
    throw new ClipError('ECORRUPT', `artifact has no ${PROFILE_BLOB_TYPE} layer of a sane size`, { object });
  }
  signal?.throwIfAborted();
  return repo.readSmallBlob({ digest: blob.digest, size: blob.size! });
}

/** A published profile fetched before the index it must match is known (findProfile checks it). */
export interface FetchedProfile {
  bytes: Buffer;
  from: string;
  /** The index its artifact says it was recorded on (PROFILE_INDEX_ANNOTATION), if it says. */
  indexDigest?: string;
}

/**
 * The registry's last published profile of a manifest, fetched while a mount's index is still on
 * its way (one referrers listing serves both lookups): on an empty node the profile is at hand when
 * the index is, instead of two round trips and a download later. Not checked here; never throws.
 */
export async function fetchLatestProfile(repo: RegistryRepository, manifestDigest: string, logger: Logger = silentLogger, signal?: AbortSignal): Promise<FetchedProfile | undefined> {
  try {
    // Without the signal: the listing is shared with the index lookup, which must not fail with it.
    const [desc] = await listProfiles(repo, manifestDigest, undefined, true);
    if (!desc || signal?.aborted) return undefined;
    const from = `${repo.location}@${desc.digest}`;
    const indexDigest = desc.annotations?.[PROFILE_INDEX_ANNOTATION];
    return { bytes: await fetchArtifactProfile(repo, desc, from, signal), from, ...(indexDigest ? { indexDigest } : {}) };
  } catch (err) {
    logger.debug({ image: manifestDigest, err: (err as Error).message }, 'profile: cannot fetch the published one ahead');
    return undefined;
  }
}

/**
 * For `clip mount` on a node whose local cache has no profile of the image: the published one
 * (found through the referrers listing `repo` made for the index), kept in the local cache, where
 * the mount finds it without asking the registry again. Run while the node's server starts, it
 * takes the profile's round trips off the mount's path. Never throws: a profile is a hint.
 */
export async function keepPublishedProfile(target: ProfileTarget, repo: RegistryRepository, cacheDir: string, logger: Logger = silentLogger): Promise<FoundProfile | undefined> {
  try {
    const found = await findProfile(target, { cacheDir, repo: async () => repo, logger, reuseListing: true });
    if (found?.origin === 'registry') await storeLocalProfile(cacheDir, target.manifestDigest, found.bytes);
    return found;
  } catch (err) {
    logger.debug({ err }, 'profile: cannot keep the published one locally');
    return undefined;
  }
}

/** Keep a profile in the local cache. */
export async function storeLocalProfile(cacheDir: string, manifestDigest: string, bytes: Buffer): Promise<string> {
  const file = localProfilePath(cacheDir, manifestDigest);
  await ensurePrivateDir(path.dirname(file));
  await writePrivateFile(file, bytes);
  return file;
}

/** Keep a profile in the shared cache; false when it is unavailable. */
export function storeSharedProfile(remote: RedisChunkCache, manifestDigest: string, bytes: Buffer): Promise<boolean> {
  return remote.storeValue(sharedProfileKey(manifestDigest), bytes);
}

/** Push a profile as an artifact referring to the image manifest. */
export async function publishProfile(
  repo: RegistryRepository,
  pusher: RegistryPusher,
  subject: { mediaType: string; digest: string; size: number },
  profile: Pick<StartupProfile, 'indexDigest'>,
  bytes: Buffer,
): Promise<ReferrerDescriptor> {
  const { pushArtifact } = await import('../oci/referrers.js');
  return pushArtifact(repo, pusher, {
    artifactType: PROFILE_ARTIFACT_TYPE,
    subject,
    blobs: [{ mediaType: PROFILE_BLOB_TYPE, bytes }],
    annotations: { [PROFILE_INDEX_ANNOTATION]: profile.indexDigest, [PROFILE_FORMAT_ANNOTATION]: String(PROFILE_VERSION) },
  });
}
