/**
 * Bounds every index obeys. The writer's inputs come from scans that enforce them, and the reader
 * refuses an index outside them: a crafted index must not make a reader allocate, loop or create
 * files beyond what a real image could need.
 */

/** Chunk sizes are powers of two in this range (storage relies on it for chunk arithmetic). */
export const MIN_CHUNK_SIZE = 512;
export const MAX_CHUNK_SIZE = 2 ** 30;

/** No layer, compressed or not, is larger than this (1 TiB); `clip index --max-inflated` stays below it. */
export const MAX_LAYER_BYTES = 2 ** 40;

/**
 * Most uncompressed bytes per compressed byte a real blob can yield: deflate tops out near 1032:1;
 * zstd's RLE blocks reach about 43 690:1 (a 3-byte header per 128 KiB), so 65 536 bounds it.
 * Plus a little slack for tiny blobs.
 */
export const MAX_RATIO = { gzip: 1032, zstd: 65536, none: 1 } as const;
export const RATIO_SLACK = 64 * 1024;

/** mtimes in seconds that a JS Date (and so `ls -l`) can represent: +-8.64e12 s. */
export const MAX_MTIME_SEC = 8.64e12;

/** An inflate window is at most 32 KiB; a bit offset is under a byte. */
export const MAX_WINDOW = 32 * 1024;
