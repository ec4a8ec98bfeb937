/**
 * What reading a layer yields: tar entries with their byte offsets in the uncompressed stream,
 * and checkpoints from which decompression can resume anywhere.
 */

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  /**
   * Normalised path relative to the root: no leading "./" or "/", no trailing "/", no "." or ".." parts.
   * A byte string (see tar-path.ts): pathBytes() gives the bytes, shownPath() the text.
   */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (mask 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Content length in bytes (0 for everything but regular files). */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Symlink target, or for a hardlink the normalised path of the entry it links to. A byte string, as path. */
  linkTarget: string;
  devMajor: number;
  devMinor: number;
  /** PAX SCHILY.xattr.* values, keyed by attribute name ("security.capability"). */
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's first header block (including any PAX or GNU long-name blocks). */
  headerOffset: number;
  /** Offset of the entry's content in the uncompressed layer. */
  dataOffset: number;
}

/**
 * A point at a deflate block boundary from which inflation can resume without the bytes before it.
 * For zstd layers, a frame start (bits 0, empty window).
 */
export interface Checkpoint {
  /** Offset in the uncompressed stream. */
  out: number;
  /** Offset in the compressed blob of the first byte holding bits of the next block. */
  in: number;
  /** How many bits of the byte at `in - 1` belong to the next block (0 when byte-aligned), zran's convention. */
  bits: number;
  /** Up to 32 KiB of uncompressed data ending at `out` (the inflate dictionary), raw. */
  window: Buffer;
  /**
   * With ScanOptions.packWindows: the window raw-deflate compressed as the index stores it, and
   * `window` empty. Keeps a scan's memory at the index's size, not 16 MiB per GiB of layer.
   */
  packed?: PackedWindow;
}

/** The window of a checkpoint whose window is elsewhere for now (deflated, or fetched on first use). */
export const NO_WINDOW: Buffer = Buffer.alloc(0);

export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** Everything one pass over a layer learns; the index is built from one of these per layer. */
export interface LayerScan {
  compression: LayerCompression;
  compressedSize: number;
  uncompressedSize: number;
  /** sha256 of the blob as stored ("sha256:<hex>"); verified against the manifest by the caller. */
  digest: string;
  /** sha256 of the uncompressed tar ("sha256:<hex>"); verified against the config's diff_id by the caller. */
  diffId: string;
  /** Entries in stream order, as the tar has them (no overlay rules applied). */
  entries: TarEntry[];
  /** Ascending by `out`; the first is always at out = 0. */
  checkpoints: Checkpoint[];
  chunkSize: number;
  /** sha256 of each chunkSize piece of the uncompressed layer, 32 bytes each, concatenated. */
  chunkDigests: Buffer;
  /** Every deflate block boundary, encoded (block-bounds.ts); empty for zstd and uncompressed layers. */
  bounds?: Buffer;
}

/** A checkpoint window as an index stores it (archive/window-codec.ts); no codec: deflate (scans kept as scan-v1). */
export interface PackedWindow {
  bytes: Buffer;
  rawLength: number;
  codec?: 'deflate' | 'brotli';
}
