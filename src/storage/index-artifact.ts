/**
 * A clip index as it travels with its image: an OCI artifact in the image's own repository whose
 * subject is the image manifest (docs/index-artifact.md is the written format), and the same
 * compressed bytes in the shared cache under the manifest digest. Whatever the place, an index is
 * only taken for an image when it describes exactly that manifest, config and layers.
 */
import { createHash } from 'node:crypto';
import { readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { constants, gunzip, gzip } from 'node:zlib';
import { ImageIndex } from '../index/reader.js';
import { listReferrers, pushArtifact, type ReferrerDescriptor } from '../oci/referrers.js';
import type { RegistryPusher } from '../oci/push.js';
import type { RegistryRepository } from '../oci/registry-source.js';
import { ensurePrivateDir, writePrivateFile } from './cache-dir.js';
import { cachedIndexPath } from './indexer.js';
import type { RedisChunkCache } from './remote-cache.js';
import type { ResolvedImage } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { READABLE_VERSIONS } from '../index/format.js';
import { formatVersion } from '../index/sections.js';
import { publishedForm, splitWindows } from '../index/published.js';

export const INDEX_ARTIFACT_TYPE = 'application/vnd.clipfs.index.v1';
export const INDEX_BLOB_TYPE = 'application/vnd.clipfs.index.v1+gzip';
/** Format 4: the checkpoint windows the index blob leaves out, read by range (not compressed: they are brotli already). */
export const WINDOWS_BLOB_TYPE = 'application/vnd.clipfs.index.windows.v1';
/** Annotation: the index file format version inside the blob. */
export const FORMAT_ANNOTATION = 'dev.clipfs.index.format';
/** Largest index a node will inflate from a published blob. */
export const MAX_INDEX_BYTES = 1024 * 1024 * 1024;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Index bytes as they travel (gzip: names, modes and checkpoint windows compress well). */
export function packIndex(bytes: Buffer): Promise<Buffer> {
  return gzipAsync(bytes, { level: constants.Z_BEST_COMPRESSION });
}

/** Output buffers of an index's inflation: from zlib's 16 KiB (one trip to the libuv pool each) up to this. */
const MAX_UNPACK_CHUNK = 16 * 1024 * 1024;

/**
 * The output buffer to inflate `packed` into: the size its gzip trailer announces (ISIZE, the
 * uncompressed length mod 2^32), and a page more so the last write ends the stream. Only a hint:
 * a wrong one costs buffers, never bytes (maxOutputLength bounds the output). In zlib's default
 * 16 KiB buffers a 0.76 MB index took 47 trips to the pool, 15–24 ms of a cold mount's path to
 * ready against ~5 ms in one (bench/index/RESULTS.md, session 16).
 */
export function unpackChunkSize(packed: Buffer): number {
  const announced = packed.length >= 18 ? packed.readUInt32LE(packed.length - 4) : 0;
  return Math.min(MAX_UNPACK_CHUNK, Math.max(constants.Z_DEFAULT_CHUNK, announced + 4096));
}

export async function unpackIndex(packed: Buffer, object: string): Promise<Buffer> {
  try {
    return await gunzipAsync(packed, { maxOutputLength: MAX_INDEX_BYTES, chunkSize: unpackChunkSize(packed) });
  } catch (err) {
    throw new ClipError('ECORRUPT', `published index does not inflate (${(err as Error).message})`, { object, cause: err });
  }
}

/**
 * The index in `bytes` if it describes exactly `image` (its manifest, config and every layer),
 * else a clear error: a valid index of another image must never be applied to this one.
 */
export function indexFor(image: ResolvedImage, bytes: Buffer, from: string): ImageIndex {
  const index = new ImageIndex(bytes, from);
  const mismatch = (what: string): ClipError => new ClipError('ECORRUPT', `index describes another image: ${what}`, { object: from });
  if (index.image.manifestDigest !== image.manifestDigest) throw mismatch(`manifest ${index.image.manifestDigest}, not ${image.manifestDigest}`);
  if (`sha256:${createHash('sha256').update(index.config).digest('hex')}` !== image.configDescriptor.digest) throw mismatch('another config');
  if (index.layers.length !== image.layers.length) throw mismatch(`${index.layers.length} layers, not ${image.layers.length}`);
  index.layers.forEach((l, i) => {
    const want = image.layers[i]!;
    if (l.digest !== want.descriptor.digest || l.diffId !== want.diffId || l.compressedSize !== want.descriptor.size) throw mismatch(`layer ${i} is ${l.digest}`);
  });
  return index;
}

/**
 * Push `indexBytes` as an artifact referring to the image manifest. A format 4 index that holds
 * its windows goes as two blobs: the index without them (gzip, fetched whole by a mount) and the
 * windows blob (fetched by range, window by window). `packed`: `indexBytes` packed already, used
 * when nothing is split off.
 */
export async function publishIndex(
  repo: RegistryRepository, pusher: RegistryPusher, image: ResolvedImage, indexBytes: Buffer, packed?: Buffer,
): Promise<ReferrerDescriptor> {
  const version = formatVersion(indexBytes);
  const { eager, windows } = version >= 4 ? splitWindows(indexBytes, image.reference) : { eager: indexBytes, windows: undefined };
  if (version >= 4 && !windows && !new ImageIndex(indexBytes, image.reference).windowsAtHand) {
    throw new ClipError('EINVAL', 'this index holds no checkpoint windows (it came from a published artifact): pushed alone, no node could read from its checkpoints; index the image here (clip index --force) to push it', { object: image.reference });
  }
  const blobs = [{ mediaType: INDEX_BLOB_TYPE, bytes: windows ? await packIndex(eager) : packed ?? (await packIndex(indexBytes)) }];
  if (windows?.length) blobs.push({ mediaType: WINDOWS_BLOB_TYPE, bytes: windows });
  return pushArtifact(repo, pusher, {
    artifactType: INDEX_ARTIFACT_TYPE,
    subject: { mediaType: image.manifestMediaType, digest: image.manifestDigest, size: image.manifestBytes.length },
    blobs,
    // No timestamp: the same index pushed twice is the same manifest, listed once.
    annotations: { [FORMAT_ANNOTATION]: String(version) },
  });
}

/** Whether an index found elsewhere may be used (false: it was condemned). */
export type Acceptor = (indexBytes: Buffer) => Promise<boolean>;
const acceptAll: Acceptor = () => Promise.resolve(true);

export interface FoundIndex {
  index: ImageIndex;
  bytes: Buffer;
  /** The blob as published (packed), to store elsewhere without packing it again. */
  packed: Buffer;
  /** The artifact manifest it came from. */
  artifact: string;
}

/**
 * The last published index of `image` this build can read, or undefined when there is none.
 * Artifacts that fail (unreadable, another format version, another image) are logged and skipped.
 */
export async function findPublishedIndex(repo: RegistryRepository, image: ResolvedImage, logger: Logger = silentLogger, accept: Acceptor = acceptAll): Promise<FoundIndex | undefined> {
  // `reuse`: the listing a mount's early profile fetch made (or is making) for this resolve.
  const found = await listReferrers(repo, image.manifestDigest, { artifactType: INDEX_ARTIFACT_TYPE, reuse: true });
  // The tag schema appends: the last listed is the last pushed.
  for (const desc of [...found].reverse()) {
    const object = `${repo.location}@${desc.digest}`;
    try {
      if (desc.annotations?.[FORMAT_ANNOTATION] !== undefined && !READABLE_VERSIONS.map(String).includes(desc.annotations[FORMAT_ANNOTATION])) {
        logger.info({ artifact: object, format: desc.annotations[FORMAT_ANNOTATION] }, 'published index of another format version: skipped');
        continue;
      }
      const manifest = JSON.parse((await repo.getManifest(desc.digest)).bytes.toString('utf8')) as { layers?: { mediaType?: string; digest?: string; size?: number }[] };
      const blob = manifest.layers?.find((l) => l.mediaType === INDEX_BLOB_TYPE);
      if (!blob || typeof blob.digest !== 'string' || !Number.isSafeInteger(blob.size) || blob.size! > MAX_INDEX_BYTES) {
        throw new ClipError('ECORRUPT', `artifact has no ${INDEX_BLOB_TYPE} layer of a sane size`, { object });
      }
      const packed = await repo.readSmallBlob({ digest: blob.digest, size: blob.size! });
      const bytes = await unpackIndex(packed, object);
      const index = indexFor(image, bytes, object);
      // Windows left out must be where the index says: the artifact's windows blob, of that digest and size.
      const wanted = index.windowsAtHand ? undefined : index.windowsBlob;
      if (wanted && !manifest.layers?.some((l) => l.mediaType === WINDOWS_BLOB_TYPE && l.digest === wanted.digest && l.size === wanted.size)) {
        throw new ClipError('ECORRUPT', `artifact has no ${WINDOWS_BLOB_TYPE} layer ${wanted.digest} of ${wanted.size} bytes, which its index reads windows from`, { object });
      }
      if (!(await accept(bytes))) throw new ClipError('ECORRUPT', 'this index was found to lie about a layer (condemned)', { object });
      return { index, bytes, packed, artifact: desc.digest };
    } catch (err) {
      logger.warn({ artifact: object, err: (err as Error).message }, 'published index unusable: skipped');
    }
  }
  return undefined;
}

/** The shared cache's key for an image's index: its manifest digest. */
export function sharedIndexKey(manifestDigest: string): string {
  return `clip:index:${manifestDigest}`;
}

/** The image's index from the shared cache, if one is there and describes exactly this image. */
export async function findSharedIndex(remote: RedisChunkCache, image: ResolvedImage, logger: Logger = silentLogger, accept: Acceptor = acceptAll): Promise<{ index: ImageIndex; bytes: Buffer } | undefined> {
  const key = sharedIndexKey(image.manifestDigest);
  const packed = await remote.fetchValue(key);
  if (!packed) return undefined;
  try {
    const bytes = await unpackIndex(packed, `shared cache ${key}`);
    const index = indexFor(image, bytes, `shared cache ${key}`);
    if (!(await accept(bytes))) throw new ClipError('ECORRUPT', 'this index was found to lie about a layer (condemned)', { object: `shared cache ${key}` });
    return { index, bytes };
  } catch (err) {
    logger.warn({ key, err: (err as Error).message }, 'shared cache index unusable: skipped');
    return undefined;
  }
}

/** Keep the index in the shared cache (`packed`: the same bytes packed already, when at hand). */
export async function storeSharedIndex(remote: RedisChunkCache, manifestDigest: string, indexBytes: Buffer, packed?: Buffer): Promise<boolean> {
  return remote.storeValue(sharedIndexKey(manifestDigest), packed ?? (await packIndex(indexBytes)));
}

/** Where indexes found to lie about a layer are listed, by the sha256 of their bytes as published (with or without windows, one index). */
function condemnedPath(cacheDir: string, indexBytes: Buffer): string {
  return path.join(cacheDir, 'indexes', 'bad', createHash('sha256').update(publishedForm(indexBytes)).digest('hex'));
}

function condemnedKey(indexBytes: Buffer): string {
  return `clip:bad-index:${createHash('sha256').update(publishedForm(indexBytes)).digest('hex')}`;
}

/**
 * Never use this index again: it is listed (by content) here and in the shared cache, so neither
 * this node nor another takes it again from any place, and its cached copies are removed.
 */
export async function condemnIndex(cacheDir: string, manifestDigest: string, indexBytes: Buffer, reason: string, remote?: RedisChunkCache): Promise<void> {
  const listed = condemnedPath(cacheDir, indexBytes);
  await ensurePrivateDir(path.dirname(path.dirname(listed)));
  await ensurePrivateDir(path.dirname(listed));
  await writePrivateFile(listed, `${manifestDigest}\n${reason}\n`);
  const cached = cachedIndexPath(cacheDir, manifestDigest);
  const copy = await readFile(cached).catch(() => undefined);
  if (copy?.equals(indexBytes)) await rename(cached, `${cached}.bad`).catch(() => undefined);
  if (remote) {
    await remote.storeValue(condemnedKey(indexBytes), Buffer.from(reason));
    const shared = await remote.fetchValue(sharedIndexKey(manifestDigest));
    if (shared && (await unpackIndex(shared, 'shared cache').catch(() => undefined))?.equals(indexBytes)) await remote.deleteValue(sharedIndexKey(manifestDigest));
  }
}

/** Whether this index was condemned, here or (with a shared cache) by any node. */
export async function isCondemned(cacheDir: string, indexBytes: Buffer, remote?: RedisChunkCache): Promise<boolean> {
  if (await stat(condemnedPath(cacheDir, indexBytes)).then(() => true, () => false)) return true;
  return remote ? (await remote.fetchValue(condemnedKey(indexBytes))) !== null : false;
}
