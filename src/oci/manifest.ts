/**
 * Manifests and indexes (OCI and Docker v2 schema 2) parsed and checked, and an image resolved from
 * them: an index narrowed to one platform, the config blob read and verified, layers paired with
 * their diff_ids.
 */
import { ClipError } from '../util/errors.js';
import { assertDigest, verifyBytes } from './digest.js';
import {
  DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST,
  isImageManifestMediaType, isIndexMediaType, layerCompression,
} from './media-types.js';
import { formatPlatform, hostPlatform, normalizePlatform, platformMatches, selectPlatform } from './platform.js';
import type { Descriptor, ImageConfig, Layer, Platform, ResolveOptions, ResolvedImage } from './types.js';

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export type ParsedManifest = { kind: 'manifest'; mediaType: string; manifest: ImageManifest } | { kind: 'index'; mediaType: string; index: ImageIndex };

/** A manifest as fetched: its bytes, its digest (verified), its media type as served. */
export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

/** What `resolveImage` needs from a source: manifests by digest and small blobs (config). */
export interface ManifestSource {
  fetchManifest(desc: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>): Promise<FetchedManifest>;
  readSmallBlob(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<Buffer>;
}

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

function corrupt(object: string, why: string): ClipError {
  return new ClipError('ECORRUPT', why, { object });
}

function checkDescriptor(d: unknown, object: string, what: string): Descriptor {
  const desc = d as Partial<Descriptor> | null;
  if (!desc || typeof desc !== 'object' || typeof desc.mediaType !== 'string' || typeof desc.digest !== 'string' || typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw corrupt(object, `${what} is not a valid descriptor (mediaType, digest, size)`);
  }
  assertDigest(desc.digest, `${what} digest`);
  return desc as Descriptor;
}

/** Parse manifest bytes; the media type comes from the document, else from the HTTP Content-Type, else its shape. */
export function parseManifest(bytes: Buffer, object: string, servedType?: string): ParsedManifest {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ClipError('ECORRUPT', `manifest is not valid JSON: ${(err as Error).message}`, { object, cause: err });
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw corrupt(object, 'manifest is not a JSON object');
  let mediaType = typeof json.mediaType === 'string' ? json.mediaType : undefined;
  const served = servedType?.split(';')[0]?.trim();
  if (!mediaType && served && (isIndexMediaType(served) || isImageManifestMediaType(served))) mediaType = served;
  if (!mediaType) mediaType = Array.isArray(json.manifests) ? OCI_INDEX : OCI_MANIFEST;
  if (json.schemaVersion === 1 || mediaType === DOCKER_SCHEMA1 || mediaType === DOCKER_SCHEMA1_SIGNED) {
    throw new ClipError('EUNSUPPORTED', 'Docker image manifest schema 1 is not supported (push the image again with a current tool)', { object });
  }
  if (json.schemaVersion !== 2) throw corrupt(object, `unsupported schemaVersion ${String(json.schemaVersion)}`);
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(json.manifests)) throw corrupt(object, 'index has no "manifests" array');
    const manifests = json.manifests.map((d, i) => checkDescriptor(d, object, `manifests[${i}]`));
    return { kind: 'index', mediaType, index: { ...(json as unknown as ImageIndex), manifests } };
  }
  if (isImageManifestMediaType(mediaType)) {
    if (!Array.isArray(json.layers)) throw corrupt(object, 'manifest has no "layers" array');
    const config = checkDescriptor(json.config, object, 'config');
    const layers = json.layers.map((d, i) => checkDescriptor(d, object, `layers[${i}]`));
    return { kind: 'manifest', mediaType, manifest: { ...(json as unknown as ImageManifest), config, layers } };
  }
  throw new ClipError('EUNSUPPORTED', `unsupported manifest media type "${mediaType}"`, { object });
}

function parseConfig(bytes: Buffer, digest: string): ImageConfig {
  let json: ImageConfig;
  try {
    json = JSON.parse(bytes.toString('utf8')) as ImageConfig;
  } catch (err) {
    throw new ClipError('ECORRUPT', `image config is not valid JSON: ${(err as Error).message}`, { object: digest, cause: err });
  }
  if (!json || typeof json !== 'object' || !json.rootfs || !Array.isArray(json.rootfs.diff_ids)) {
    throw corrupt(digest, 'image config has no rootfs.diff_ids');
  }
  json.rootfs.diff_ids.forEach((d) => assertDigest(d, 'diff_id'));
  return json;
}

export interface ResolveInput extends ResolveOptions {
  reference: string;
  location: string;
  /** The top manifest or index, already fetched and verified. */
  top: FetchedManifest;
}

/** Walks from the top manifest to one image: platform selection, config, layers. */
export async function resolveImage(source: ManifestSource, input: ResolveInput): Promise<ResolvedImage> {
  const wanted = normalizePlatform(input.platform ?? hostPlatform());
  let current = input.top;
  let chosenPlatform: Platform | undefined;
  for (let depth = 0; ; depth++) {
    const parsed = parseManifest(current.bytes, `${input.reference} (${current.digest})`, current.mediaType);
    if (parsed.kind === 'manifest') {
      return buildImage(source, input, current, parsed.mediaType, parsed.manifest, chosenPlatform, depth === 0);
    }
    if (depth >= 2) throw corrupt(input.reference, 'image indexes nested too deep');
    const candidates = parsed.index.manifests.filter((d) => isImageManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType));
    const pick = selectPlatform(candidates, wanted) ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
    if (!pick) {
      const offered = candidates.map((d) => (d.platform ? formatPlatform(d.platform) : 'unspecified')).join(', ') || 'none';
      throw new ClipError('EUNSUPPORTED', `no image for platform ${formatPlatform(wanted)} (offered: ${offered})`, { object: input.reference });
    }
    chosenPlatform = pick.platform;
    current = await source.fetchManifest(pick);
  }
}

async function buildImage(
  source: ManifestSource, input: ResolveInput, fetched: FetchedManifest, mediaType: string, manifest: ImageManifest, fromIndex: Platform | undefined,
  /** The reference named this manifest itself, not an index entry. */
  direct: boolean,
): Promise<ResolvedImage> {
  if (manifest.config.size > MAX_CONFIG_BYTES) throw corrupt(manifest.config.digest, `image config of ${manifest.config.size} bytes is too large`);
  input.onImageManifest?.(fetched.digest);
  const configBytes = await source.readSmallBlob(manifest.config);
  verifyBytes(configBytes, manifest.config.digest, 'image config');
  const config = parseConfig(configBytes, manifest.config.digest);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw corrupt(input.reference, `manifest has ${manifest.layers.length} layers but the config lists ${diffIds.length} diff_ids`);
  }
  const layers: Layer[] = manifest.layers.map((descriptor, i) => ({
    descriptor,
    diffId: diffIds[i]!,
    compression: layerCompression(descriptor.mediaType, descriptor.digest),
  }));
  const platform: Platform = fromIndex ?? { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
  // A single-platform image asked for by another platform is a mistake worth saying, not a silent substitute.
  if (direct && input.platform && !platformMatches(platform, input.platform)) {
    throw new ClipError('EUNSUPPORTED', `the image is for ${formatPlatform(platform)} only, not ${formatPlatform(normalizePlatform(input.platform))}`, { object: input.reference });
  }
  return {
    reference: input.reference,
    location: input.location,
    manifestDigest: fetched.digest,
    manifestMediaType: mediaType,
    manifestBytes: fetched.bytes,
    platform,
    configDescriptor: manifest.config,
    configBytes,
    config,
    layers,
  };
}

