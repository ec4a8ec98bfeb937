/**
 * The contract between `oci` and everything above it: an image is resolved to a manifest, a config
 * and an ordered list of layers; blobs are read from a BlobStore, whole or by byte range, whether
 * it is a registry repository or a local OCI image layout.
 */
import type { Readable } from 'node:stream';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string; // "sha256:<hex>"
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
}

/** The parts of the image config (application/vnd.oci.image.config.v1+json) clip uses. */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  config?: {
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown>;
    Volumes?: Record<string, unknown>;
    StopSignal?: string;
  };
  rootfs: { type: string; diff_ids: string[] };
  created?: string;
  history?: unknown[];
}

export type Compression = 'gzip' | 'zstd' | 'none';

export interface Layer {
  descriptor: Descriptor; // digest/size of the blob as stored (compressed)
  diffId: string; // sha256 of the uncompressed tar, from the config
  compression: Compression;
}

export interface ResolvedImage {
  /** Canonical reference: "docker.io/library/ubuntu:latest", "host:5000/r@sha256:...", or "oci:/abs/dir:tag". */
  reference: string;
  /** Where the blobs live, as BlobStore.location. */
  location: string;
  manifestDigest: string;
  manifestMediaType: string;
  /** The manifest's raw bytes, exactly as served (its digest is manifestDigest). */
  manifestBytes: Buffer;
  platform: Platform;
  configDescriptor: Descriptor;
  /** The config blob's raw bytes, verified against configDescriptor.digest. */
  configBytes: Buffer;
  config: ImageConfig;
  layers: Layer[];
}

export interface BlobReadOptions {
  signal?: AbortSignal;
  /** Called with each chunk's length as bytes arrive (progress, metrics). */
  onBytes?: (n: number) => void;
}

/** A place blobs are read from: a registry repository or a local OCI image layout. */
export interface BlobStore {
  /** Stable identity of the store, recorded in indexes: "registry.example:5000/team/app" or "oci:/abs/dir". */
  readonly location: string;
  /** The whole blob as a stream, verified against `digest`: the stream errors (EDIGEST) on mismatch. */
  openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, opts?: BlobReadOptions): Promise<Readable>;
  /** Bytes [start, end) of the blob as stored. Not verifiable alone: callers verify what they derive. */
  openBlobRange(desc: Pick<Descriptor, 'digest' | 'size'>, start: number, end: number, opts?: BlobReadOptions): Promise<Readable>;
  close?(): Promise<void>;
}

export interface ResolveOptions {
  platform?: Platform;
  /**
   * Called with the image manifest's digest as soon as it is known, before its config is fetched:
   * a caller that asks the registry more about the image (its referrers) starts now, not a round
   * trip later.
   */
  onImageManifest?: (digest: string) => void;
}

export interface ImageSource extends BlobStore {
  /** Resolve the reference to one image manifest, choosing a platform from an index if needed. */
  resolve(opts?: ResolveOptions): Promise<ResolvedImage>;
}
