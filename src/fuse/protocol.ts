/**
 * The FUSE kernel protocol (include/uapi/linux/fuse.h), as far as a read-only server needs it:
 * opcodes, INIT flags, and the fixed layouts of the structs it reads and writes (little-endian,
 * naturally aligned, as on every architecture Linux runs FUSE on).
 */

export const FUSE_KERNEL_VERSION = 7;
/** The minor version this server implements; the kernel and we settle on the smaller of the two. */
export const FUSE_KERNEL_MINOR_VERSION = 45;
export const FUSE_ROOT_ID = 1n;

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
} as const;

export type OpcodeName = keyof typeof Opcode;

const opcodeNames = new Map<number, string>(Object.entries(Opcode).map(([k, v]) => [v, k]));
export function opcodeName(op: number): string {
  return opcodeNames.get(op) ?? `OPCODE_${op}`;
}

/** Operations that would change the filesystem: a read-only server answers them EROFS. */
export const WRITE_OPCODES: ReadonlySet<number> = new Set([
  Opcode.SETATTR,
  Opcode.SYMLINK,
  Opcode.MKNOD,
  Opcode.MKDIR,
  Opcode.UNLINK,
  Opcode.RMDIR,
  Opcode.RENAME,
  Opcode.LINK,
  Opcode.WRITE,
  Opcode.SETXATTR,
  Opcode.REMOVEXATTR,
  Opcode.CREATE,
  Opcode.FALLOCATE,
  Opcode.RENAME2,
  Opcode.COPY_FILE_RANGE,
  Opcode.COPY_FILE_RANGE_64,
  Opcode.TMPFILE,
]);

/** INIT flags: bits 0-31 travel in `flags`, bits 32-63 in `flags2` (when INIT_EXT is set). */
export const InitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  OVER_IO_URING: 1n << 41n,
  REQUEST_TIMEOUT: 1n << 42n,
} as const;

export function initFlagNames(flags: bigint): string[] {
  return Object.entries(InitFlag)
    .filter(([, bit]) => (flags & bit) !== 0n)
    .map(([name]) => name);
}

/** open_flags in the OPEN/OPENDIR reply. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
} as const;

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding. */
export const IN_HEADER_SIZE = 40;
/** fuse_out_header: len, error, unique. */
export const OUT_HEADER_SIZE = 16;

/** Notifications the server sends unasked: an out header with unique 0 and the code as its error. */
export const NotifyCode = {
  /** Put every request the server read but did not answer back in the queue (protocol 7.40+). */
  RESEND: 7,
} as const;

/** Set in `unique` of a request the kernel sent again after FUSE_NOTIFY_RESEND. */
export const UNIQUE_RESEND = 1n << 63n;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const INIT_OUT_SIZE = 64;
export const STATFS_OUT_SIZE = 80;
export const DIRENT_HEADER_SIZE = 24;
/** The kernel refuses to read a request into a buffer smaller than this. */
export const FUSE_MIN_READ_BUFFER = 8192;
/** fuse_write_in, which the kernel adds to max_write when sizing the smallest read buffer. */
export const WRITE_IN_SIZE = 40;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: bigint;
  uid: number;
  gid: number;
  pid: number;
  /** Length of the extension area at the end of the request, in bytes. */
  extlen: number;
}

export function readInHeader(buf: Buffer): InHeader {
  return {
    len: buf.readUInt32LE(0),
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: buf.readBigUInt64LE(16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
    extlen: buf.readUInt16LE(36) * 8,
  };
}

export function writeOutHeader(buf: Buffer, len: number, error: number, unique: bigint): void {
  buf.writeUInt32LE(len, 0);
  buf.writeInt32LE(error, 4);
  buf.writeBigUInt64LE(unique, 8);
}

/**
 * The header of the reply to the request in `req`, its `unique` copied as the request's bytes: no
 * BigInt built and written back on the reader threads' path (one per request).
 */
export function writeReplyHeader(out: Buffer, len: number, error: number, req: Buffer): void {
  out.writeUInt32LE(len, 0);
  out.writeInt32LE(error, 4);
  for (let i = 8; i < 16; i++) out[i] = req[i]!;
}

/** A NUL-terminated string at `offset` (names in LOOKUP, GETXATTR); the rest of the buffer if none. */
export function readCString(buf: Buffer, offset: number, end = buf.length): { value: Buffer; next: number } {
  const nul = buf.indexOf(0, offset);
  const stop = nul < 0 || nul > end ? end : nul;
  return { value: buf.subarray(offset, stop), next: stop + 1 };
}
