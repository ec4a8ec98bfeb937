/**
 * The index file layout (version 4; versions 1-3 are read too: version 3 has no WindowDigests
 * section and keeps every window in the file, version 2 has no Bounds section either, version 1
 * neither, and every window deflated). All integers little-endian; 64-bit quantities that must stay
 * exact (sizes, offsets, seconds) are IEEE doubles, exact for every integer below 2^53 and readable
 * without BigInt.
 *
 *   header   magic "CLIPIDX\0" | u32 version | u32 section count | f64 file length | section table
 *   table    per section: u32 id | u32 reserved | f64 offset | f64 length   (sections 8-byte aligned)
 *   trailer  sha256 of every byte before it (32 bytes)
 *
 * sha256 rather than crc32c: node has it built in (OpenSSL, hardware-accelerated), it takes a few
 * milliseconds on a 10 MB index, and it catches every corruption a CRC would and more; node's zlib
 * offers crc32 only, and crc32c would need a dependency or a slow pure-JS loop.
 */

export const MAGIC = Buffer.from('CLIPIDX\0', 'latin1');
export const FORMAT_VERSION = 4;
/**
 * Versions this clip reads: 3 keeps its windows in the file (no WindowDigests); 2 lacks the
 * Bounds section too (fetches end at the next checkpoint); 1 lacks it too and its windows are all
 * raw deflate (C_WIN_CODEC unused).
 */
export const READABLE_VERSIONS: readonly number[] = [1, 2, 3, 4];
export const HEADER_SIZE = 24;
export const SECTION_ENTRY_SIZE = 24;
export const CHECKSUM_SIZE = 32;

export const Section = {
  /** UTF-8 JSON: reference, location, manifest digest and media type, platform, layer descriptors. */
  Meta: 1,
  /** The image config blob, raw. */
  Config: 2,
  /** LAYER_RECORD_SIZE bytes per layer. */
  Layers: 3,
  /** CHECKPOINT_RECORD_SIZE bytes per checkpoint, all layers one after another. */
  Checkpoints: 4,
  /**
   * Inflate windows, each packed (C_WIN_CODEC). From version 4 this is the windows blob, whole or
   * empty: an index published eagerly leaves it out, and its windows are fetched by range.
   */
  Windows: 5,
  /** 32-byte sha256 per chunk, all layers one after another. */
  Chunks: 6,
  /** ENTRY_RECORD_SIZE bytes per directory entry, breadth first; a directory's children contiguous and sorted. */
  Entries: 7,
  /** u32 per inode number: the record holding it (slot 0 unused). */
  Inodes: 8,
  /** Names and symlink targets, UTF-8, deduplicated. */
  Strings: 9,
  /** Extended attribute sets, deduplicated. */
  Xattrs: 10,
  /**
   * Version 3: deflate block boundaries per layer (archive/block-bounds.ts), where a fetch may
   * stop: u32 byte length per layer, then each layer's encoded list.
   */
  Bounds: 11,
  /**
   * Version 4: the windows blob's sha256 (32 bytes) and f64 length, then per checkpoint the first
   * WINDOW_DIGEST_SIZE bytes of the sha256 of its packed window, so that a window fetched alone
   * (by range, from any tier) is checked before it is used.
   */
  WindowDigests: 12,
} as const;
export type SectionId = (typeof Section)[keyof typeof Section];

export const REQUIRED_SECTIONS = [
  Section.Meta, Section.Config, Section.Layers, Section.Checkpoints, Section.Windows,
  Section.Chunks, Section.Entries, Section.Inodes, Section.Strings, Section.Xattrs,
] as const;

/** Layer record: u32 first checkpoint | u32 checkpoints | u32 first chunk | u32 chunks | u32 chunk size | u32 reserved. */
export const LAYER_RECORD_SIZE = 24;
export const L_CP_FIRST = 0;
export const L_CP_COUNT = 4;
export const L_CHUNK_FIRST = 8;
export const L_CHUNK_COUNT = 12;
export const L_CHUNK_SIZE = 16;

/**
 * Checkpoint record: f64 out | f64 in | f64 window offset | u32 window length | u16 raw window
 * length | u8 bits | u8 window codec (version 2; padding in version 1).
 */
export const CHECKPOINT_RECORD_SIZE = 32;
export const C_OUT = 0;
export const C_IN = 8;
export const C_WIN_OFF = 16;
export const C_WIN_LEN = 24;
export const C_WIN_RAW = 28;
export const C_BITS = 30;
export const C_WIN_CODEC = 31;

/**
 * How a window is stored. Brotli (quality 11) keeps the 32 KiB windows, nine tenths of a typical
 * index, 15 % smaller than deflate -9 (debian-python: 1.19 → 1.01 MB); each inflates in ~2 ms.
 */
export const WindowCodec = { Deflate: 0, Brotli: 1 } as const;

export const DIGEST_SIZE = 32;
/**
 * A window's digest is sha256 cut to 128 bits: it only has to catch a wrong window (damage, a
 * tier's stale bytes); forging one that matches would take 2^128 tries, and the index that names
 * it is trusted as its publisher anyway (docs/index-artifact.md, Trust).
 */
export const WINDOW_DIGEST_SIZE = 16;
/** Head of the WindowDigests section: the windows blob's sha256 and f64 length. */
export const WINDOWS_HEAD_SIZE = 40;

/**
 * Entry record, 64 bytes. The 8 bytes at E_UNION depend on the type: a file's data offset (f64);
 * a directory's first child record and child count; a symlink's target offset and length in the
 * string heap; a device's major and minor.
 */
export const ENTRY_RECORD_SIZE = 64;
export const E_INO = 0;
export const E_PARENT = 4;
export const E_MODE = 8;
export const E_UID = 12;
export const E_GID = 16;
export const E_NLINK = 20;
export const E_NSEC = 24;
export const E_NAME_OFF = 28;
export const E_NAME_LEN = 32;
export const E_LAYER = 34;
export const E_SIZE = 36;
export const E_SEC = 44;
export const E_UNION = 52;
export const E_UNION2 = 56;
/** Offset + 1 of the entry's xattr set in the Xattrs section; 0 for none. */
export const E_XATTR = 60;

/** E_LAYER of an entry with no content. */
export const NO_LAYER = 0xffff;
