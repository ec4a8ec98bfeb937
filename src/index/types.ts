/**
 * What the index records about an image, independent of where it came from. The storage layer
 * fills ImageMeta from the oci module's ResolvedImage; the index never imports oci.
 */
import type { EntryType, LayerCompression } from '../archive/types.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../util/file-mode.js';

export type { EntryType, LayerCompression };

export interface IndexPlatform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface IndexedLayer {
  /** sha256 of the blob as stored ("sha256:<hex>"). */
  digest: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  mediaType: string;
  compression: LayerCompression;
  compressedSize: number;
  uncompressedSize: number;
}

export interface ImageMeta {
  /** Canonical reference the image was resolved from. */
  reference: string;
  /** Where the blobs live (BlobStore.location). */
  location: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: IndexPlatform;
  /** The image config blob, raw bytes exactly as served. */
  config: Buffer;
  layers: IndexedLayer[];
}

/** A layer as read back from an index file: its metadata plus what random access needs. */
export interface LayerInfo extends IndexedLayer {
  chunkSize: number;
  chunkCount: number;
  checkpointCount: number;
}

/** File attributes, filled in place by ImageIndex.getattr so that hot paths need not allocate. */
export interface Attr {
  ino: number;
  /** st_mode: file type bits (S_IFMT) and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Bytes of content for files, target length for symlinks, 0 otherwise. */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  rdevMajor: number;
  rdevMinor: number;
}

export function emptyAttr(): Attr {
  return { ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0, rdevMajor: 0, rdevMinor: 0 };
}

/** Where a regular file's bytes are: a range of one layer's uncompressed tar stream. */
export interface DataLocation {
  layer: number;
  offset: number;
  size: number;
}

/** A resumable point in a layer, with its inflate window decompressed. */
export interface IndexCheckpoint {
  /** Offset in the uncompressed stream. */
  out: number;
  /** Offset in the compressed blob (see archive Checkpoint.in). */
  in: number;
  bits: number;
  window: Buffer;
}

export { S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO } from '../util/file-mode.js';

const TYPE_BITS: Record<Exclude<EntryType, 'hardlink'>, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

export function typeBits(type: Exclude<EntryType, 'hardlink'>): number {
  return TYPE_BITS[type];
}

/** The entry type of an st_mode (never 'hardlink': a hardlink is a file with nlink > 1). */
export function entryTypeOf(mode: number): Exclude<EntryType, 'hardlink'> {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'dir';
    case S_IFLNK: return 'symlink';
    case S_IFCHR: return 'char';
    case S_IFBLK: return 'block';
    case S_IFIFO: return 'fifo';
    default: return 'file';
  }
}
