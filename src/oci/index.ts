/**
 * The oci module's public entry: open an image wherever it lives (registry or OCI layout) behind
 * one ImageSource, or just the BlobStore an index recorded as a location.
 */
import { LayoutSource } from './layout.js';
import { parseLocation, parseReference } from './reference.js';
import { RegistryClient, type RegistryOptions } from './registry-client.js';
import { RegistryRepository } from './registry-source.js';
import type { BlobStore, ImageSource } from './types.js';

export type OpenOptions = RegistryOptions;

/** An image by reference: "ubuntu", "host:5000/team/app:tag", "r@sha256:...", "oci:DIR[:tag]". */
export function openImage(ref: string, opts: OpenOptions = {}): ImageSource {
  const parsed = parseReference(ref);
  if (parsed.kind === 'layout') return new LayoutSource(parsed.dir, parsed.tag);
  return new RegistryRepository(new RegistryClient(parsed.registry, opts), parsed.repository, parsed);
}

/** The blobs at a recorded location ("host:5000/team/app" or "oci:/abs/dir"), without fetching any manifest. */
export function openBlobStore(location: string, opts: OpenOptions = {}): BlobStore {
  const parsed = parseLocation(location);
  if (parsed.kind === 'layout') return new LayoutSource(parsed.dir);
  return new RegistryRepository(new RegistryClient(parsed.registry, opts), parsed.repository);
}

export type * from './types.js';
export { ClipError } from '../util/errors.js';
export { parseReference, formatReference, referenceLocation, parseLocation, type ImageReference, type RegistryReference, type LayoutReference } from './reference.js';
export { parsePlatform, formatPlatform, hostPlatform, platformMatches } from './platform.js';
export { layerCompression, isIndexMediaType, isImageManifestMediaType } from './media-types.js';
export * as mediaTypes from './media-types.js';
export { sha256Digest, assertDigest, BlobVerifier } from './digest.js';
export { DockerConfigCredentials, StaticCredentials, type Credentials, type CredentialStore } from './credentials.js';
export { RegistryClient, type RegistryOptions, type RetryOptions, type TimeoutOptions } from './registry-client.js';
export { RegistryRepository } from './registry-source.js';
export { warmHttpParser } from './warm-http.js';
export { LayoutSource } from './layout.js';
export { pushLayout, RegistryPusher, type PushOptions } from './push.js';
export { parseManifest, type ImageManifest, type ImageIndex } from './manifest.js';
export { pushArtifact, listReferrers, addToReferrersTag, referrersTag, EMPTY_CONFIG, type Artifact, type ArtifactBlob, type ReferrerDescriptor } from './referrers.js';
