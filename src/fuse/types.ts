import type { ThreadAnswers } from './sync-answers.js';
/** The contract between the FUSE server and a filesystem: plain data in, promises out. */

export interface Timespec {
  sec: number;
  nsec: number;
}

/** What stat(2) shows. `mode` includes the file type bits (S_IFREG, S_IFDIR, ...). */
export interface FuseAttr {
  ino: number;
  size: number;
  /** In 512-byte units, as st_blocks. */
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Device number of a block or character device, encoded as by `makeDev`. */
  rdev: number;
  /** Preferred I/O size; 0 lets the kernel pick the page size. */
  blksize?: number;
}

/** A LOOKUP answer. Timeouts are in seconds; absent ones take the server's defaults. */
export interface FuseEntry {
  ino: number;
  generation?: number;
  attr: FuseAttr;
  entryTimeout?: number;
  attrTimeout?: number;
}

export interface DirEntry {
  name: string | Buffer;
  ino: number;
  /** st_mode of the entry (only the type bits are used for plain READDIR). */
  mode: number;
  /** The cookie of the entry after this one: the offset the kernel passes to continue. */
  next: number;
}

/** A READDIRPLUS entry. Each one with an `entry` counts as a lookup of that inode (forget follows). */
export interface DirEntryPlus extends DirEntry {
  entry?: FuseEntry;
}

export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

export interface OpenResult {
  fh?: number;
  /** FOPEN_KEEP_CACHE: keep the page cache of earlier opens (content that does not change). */
  keepCache?: boolean;
  /** FOPEN_DIRECT_IO: bypass the page cache for this open. */
  directIo?: boolean;
  /** FOPEN_CACHE_DIR (for OPENDIR): let the kernel cache this directory's entries. */
  cacheDir?: boolean;
}

/** Who asked, and a signal that fires when the kernel interrupts the request (or the mount goes away). */
export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
  signal: AbortSignal;
}

export interface ReaddirRequest {
  fh: number;
  /** The cookie of the first entry wanted (0 at the start). */
  offset: number;
  /** Bytes the kernel's buffer holds: a hint for how many entries are worth producing. */
  size: number;
}

/**
 * A read-only filesystem. Every operation may throw a FuseErrno (or a Node error with an errno
 * `code`) to answer with that errno; anything else answers EIO. Optional operations that are absent
 * answer ENOSYS, or a harmless default where the kernel expects one (open, release, flush, statfs).
 */
export interface FuseFilesystem {
  /**
   * Requests answerable from memory alone, answered in the reader thread where they are read (see
   * sync-answers.ts): the module and the (cloneable) data it builds its SyncFilesystem from.
   */
  readonly threadAnswers?: ThreadAnswers;
  /**
   * A child of `parent` by name; null for "no such entry" (cached by the kernel when negativeTimeout > 0).
   * The name is the kernel's bytes: names need not be UTF-8.
   */
  lookup(parent: number, name: Buffer, ctx: RequestContext): Promise<FuseEntry | null>;
  /** The kernel dropped `nlookup` references to `ino`. */
  forget?(ino: number, nlookup: number): void;
  getattr(ino: number, ctx: RequestContext): Promise<FuseAttr>;
  readlink?(ino: number, ctx: RequestContext): Promise<Buffer | string>;
  open?(ino: number, flags: number, ctx: RequestContext): Promise<OpenResult | void>;
  /** Up to `size` bytes at `offset`; fewer only at end of file. */
  read(ino: number, fh: number, offset: number, size: number, ctx: RequestContext): Promise<Uint8Array>;
  /**
   * The reply carrying `data` from read() has been written to the kernel, or dropped (interrupted,
   * disconnected): the server holds no reference any more, so the buffer may be reused.
   */
  readDone?(data: Uint8Array): void;
  release?(ino: number, fh: number): Promise<void> | void;
  flush?(ino: number, fh: number, ctx: RequestContext): Promise<void>;
  opendir?(ino: number, flags: number, ctx: RequestContext): Promise<OpenResult | void>;
  /** Entries from the cookie `req.offset` on, "." and ".." included; [] at the end. */
  readdir(ino: number, req: ReaddirRequest, ctx: RequestContext): Promise<DirEntry[]>;
  /** As readdir, with the attributes of each entry. Without it the kernel is not offered READDIRPLUS. */
  readdirplus?(ino: number, req: ReaddirRequest, ctx: RequestContext): Promise<DirEntryPlus[]>;
  releasedir?(ino: number, fh: number): Promise<void> | void;
  statfs?(ino: number, ctx: RequestContext): Promise<StatFs>;
  /** The value of one extended attribute; throw ENODATA when it does not exist. */
  /** The attribute's value; null when the inode has no such attribute (ENODATA, answered without an exception). */
  getxattr?(ino: number, name: string, ctx: RequestContext): Promise<Buffer | null>;
  listxattr?(ino: number, ctx: RequestContext): Promise<string[]>;
  access?(ino: number, mask: number, ctx: RequestContext): Promise<void>;
  /** SEEK_DATA (3) or SEEK_HOLE (4) from `offset`; throw ENXIO past the end. */
  lseek?(ino: number, fh: number, offset: number, whence: number, ctx: RequestContext): Promise<number>;
  /** The kernel ended the session (unmount). */
  destroy?(): Promise<void> | void;
}

export { S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO } from '../util/file-mode.js';

/** The kernel's 32-bit device encoding (new_encode_dev), which is what FUSE's rdev carries. */
export function makeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}
