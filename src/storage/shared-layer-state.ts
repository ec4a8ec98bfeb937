/**
 * Which chunks of a layer's cache file this process has verified, in shared memory so that FUSE
 * reader threads can serve them straight from the file (src/fs/read-thread.ts). Layout: Int32
 * [0] the generation of the LayerFile that owns it now (0: none: serve nothing), [1] the last
 * generation given, a Float64 at byte 8 the owner's inode, then one byte per chunk, VERIFIED_SHARED
 * once verified by that owner. A reader checks the generation before and after it reads, and opens
 * the file itself and checks the inode: a file replaced meanwhile (evicted, reopened) is never
 * read with another inode's verified state.
 *
 * A module of its own, with no imports, because every FUSE reader thread loads it: layer-file.ts
 * would bring node:crypto and fs/promises into each thread's isolate.
 */
export const SHARED_STATE_HEADER = 16;
export const VERIFIED_SHARED = 1;
