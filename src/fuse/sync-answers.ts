/**
 * Requests a filesystem can answer with no I/O (names, attributes, links, xattrs, listings), answered
 * synchronously where the request is read: in the reader thread, without a hop to the main thread
 * (a round trip to the main thread is most of a metadata request's cost). The filesystem decides
 * by giving the server a module that builds a SyncFilesystem in the reader thread
 * (FuseFilesystem.threadAnswers); everything else (READ, OPEN, INIT, INTERRUPT…) goes on to the
 * main thread.
 */
import { attrOut, entryOut, negativeEntryOut, packDirents, packDirentsPlus, statfsOut, type Timeouts } from './encode.js';
import { Errno, FuseErrno, toErrno } from './errno.js';
import { IN_HEADER_SIZE, OPEN_OUT_SIZE, OUT_HEADER_SIZE, Opcode, OpenFlag, readCString, writeReplyHeader, type InHeader } from './protocol.js';
import type { DirEntry, DirEntryPlus, FuseAttr, FuseEntry, OpenResult, ReaddirRequest, StatFs } from './types.js';

/** The part of a filesystem that answers from memory alone. */
export interface SyncFilesystem {
  lookup(parent: number, name: Buffer): FuseEntry | null;
  getattr(ino: number): FuseAttr;
  readlink(ino: number): Buffer;
  opendir(ino: number): OpenResult;
  readdir(ino: number, req: ReaddirRequest): DirEntry[];
  readdirplus(ino: number, req: ReaddirRequest): DirEntryPlus[];
  statfs(): StatFs;
  /** null: no such attribute (ENODATA). */
  getxattr(ino: number, name: string): Buffer | null;
  listxattr(ino: number): string[];
  access(ino: number, mask: number): void;
  /**
   * A READ answered here when its bytes are at hand without waiting (optional): fill `out` with up
   * to `size` bytes at `offset` and return how many (fewer only at end of file), or -1 to hand the
   * request to the main thread's `read` (bytes not at hand, or reads switched off).
   */
  read?(ino: number, fh: number, offset: number, size: number, out: Buffer): number;
  /**
   * Where a READ's bytes lie, when they are at hand: a range of a file of this thread's, which the
   * reply is spliced from (no copy through the thread). Undefined: use `read`.
   */
  readRange?(ino: number, offset: number, size: number): FileRange | undefined;
  /**
   * Called once a READ answered here has its reply sent (optional): work the READ asked for that
   * should not delay its reply (reading ahead of a stream).
   */
  afterRead?(): void;
  /** The connection is gone from this thread: release what it holds (descriptors). */
  close?(): void;
  /**
   * Opens need no answer (every file and directory is read by inode, its cache kept): OPEN and
   * FLUSH are answered ENOSYS, after which the kernel sends neither again for the connection
   * (no_open, no_flush), nor RELEASE; three round trips to the main thread fewer per open file.
   * OPENDIR too: the kernel then opens directories by itself with FOPEN_KEEP_CACHE and
   * FOPEN_CACHE_DIR and sends no RELEASEDIR; two round trips fewer per directory listed (a python
   * start lists 14, `ls -lR` every one). Each only when the kernel offered FUSE_NO_OPEN_SUPPORT /
   * FUSE_NO_OPENDIR_SUPPORT at INIT (SyncAnswerOptions.noOpen).
   */
  zeroMessageOpen?: boolean;
}

export interface FileRange {
  fd: number;
  position: number;
  length: number;
  /** Asked after the bytes were taken: false if the file changed meanwhile (the reply is not sent). */
  valid(): boolean;
}

/** How a reader thread builds one: `module` exports `createSyncFilesystem(data)`. */
export interface ThreadAnswers {
  module: string;
  data: unknown;
}

export interface SyncAnswerOptions {
  timeouts: Timeouts;
  negativeTimeout: number;
  cacheDir: boolean;
  /** Int32 [0] / [1]: 1 once INIT (or the takeover of a connection) says the kernel has zero-message opens / opendirs. */
  noOpen?: Int32Array;
}

/** A reply: bytes (success, possibly none), or an errno (> 0). */
export type SyncReply = Uint8Array | number;

const NONE = new Uint8Array(0);

/** The answer to `req`, or undefined when its opcode is not one answered here. */
export function answerSync(fs: SyncFilesystem, h: InHeader, req: Buffer, o: SyncAnswerOptions): SyncReply | undefined {
  const ino = Number(h.nodeid);
  const body = IN_HEADER_SIZE;
  const end = req.length - h.extlen;
  try {
    switch (h.opcode) {
      case Opcode.LOOKUP: {
        const entry = fs.lookup(ino, readCString(req, body, end).value);
        if (entry) return entryOut(entry, o.timeouts);
        return o.negativeTimeout > 0 ? negativeEntryOut(o.negativeTimeout) : Errno.ENOENT;
      }
      case Opcode.GETATTR:
        return attrOut(fs.getattr(ino), o.timeouts.attr);
      case Opcode.READLINK:
        return fs.readlink(ino);
      case Opcode.OPENDIR:
        if (zeroMessage(fs, o, NO_OPENDIR)) return Errno.ENOSYS;
        return openDirOut(fs.opendir(ino), o.cacheDir);
      case Opcode.RELEASEDIR:
        return NONE;
      case Opcode.OPEN:
      case Opcode.FLUSH:
        return zeroMessage(fs, o, NO_OPEN) ? Errno.ENOSYS : undefined;
      case Opcode.READDIR:
      case Opcode.READDIRPLUS: {
        const dirReq: ReaddirRequest = { fh: Number(req.readBigUInt64LE(body)), offset: Number(req.readBigUInt64LE(body + 8)), size: req.readUInt32LE(body + 16) };
        if (h.opcode === Opcode.READDIR) return packDirents(fs.readdir(ino, dirReq), dirReq.size);
        return packDirentsPlus(fs.readdirplus(ino, dirReq), dirReq.size, o.timeouts);
      }
      case Opcode.STATFS:
        return statfsOut(fs.statfs());
      case Opcode.GETXATTR: {
        const size = req.readUInt32LE(body);
        const value = fs.getxattr(ino, readCString(req, body + 8, end).value.toString());
        return value === null ? Errno.ENODATA : sizedReply(value, size);
      }
      case Opcode.LISTXATTR:
        return sizedReply(Buffer.concat(fs.listxattr(ino).map((n) => Buffer.from(`${n}\0`))), req.readUInt32LE(body));
      case Opcode.ACCESS:
        fs.access(ino, req.readUInt32LE(body));
        return NONE;
      case Opcode.IOCTL:
        // No ioctl is served. The kernel remembers no "unsupported" answer for IOCTL (ENOSYS
        // included), so every isatty() of a file (python asks it of each module it opens) is a
        // round trip: answered here, not on the main thread.
        return Errno.ENOTTY;
      default:
        return undefined;
    }
  } catch (err) {
    return toErrno(err) ?? Errno.EIO;
  }
}

/**
 * A READ answered here, its reply (header and data) built in `reply` with no copy: the reply's
 * length, or -1 when the filesystem hands it to the main thread (or throws).
 */
export function answerRead(fs: SyncFilesystem, h: InHeader, req: Buffer, reply: Buffer): number {
  if (!fs.read) return -1;
  const body = IN_HEADER_SIZE;
  const fh = req.readUInt32LE(body) + req.readUInt32LE(body + 4) * 2 ** 32;
  const offset = req.readUInt32LE(body + 8) + req.readUInt32LE(body + 12) * 2 ** 32;
  const size = req.readUInt32LE(body + 16);
  if (OUT_HEADER_SIZE + size > reply.length) return -1;
  let n: number;
  try {
    n = fs.read(Number(h.nodeid), fh, offset, size, reply.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + size));
  } catch {
    return -1; // the main thread's read says what went wrong
  }
  if (!(n >= 0 && n <= size)) return -1;
  writeReplyHeader(reply, OUT_HEADER_SIZE + n, 0, req);
  return OUT_HEADER_SIZE + n;
}

const NO_OPEN = 0;
const NO_OPENDIR = 1;

/** Whether an open of this kind is answered ENOSYS: the kernel then opens without asking. */
function zeroMessage(fs: SyncFilesystem, o: SyncAnswerOptions, kind: typeof NO_OPEN | typeof NO_OPENDIR): boolean {
  return fs.zeroMessageOpen === true && o.noOpen !== undefined && Atomics.load(o.noOpen, kind) === 1;
}

function openDirOut(result: OpenResult, cacheDirDefault: boolean): Buffer {
  const out = Buffer.alloc(OPEN_OUT_SIZE);
  out.writeBigUInt64LE(BigInt(result.fh ?? 0), 0);
  let flags = 0;
  if (result.keepCache) flags |= OpenFlag.KEEP_CACHE;
  if (result.cacheDir ?? cacheDirDefault) flags |= OpenFlag.CACHE_DIR;
  out.writeUInt32LE(flags, 8);
  return out;
}

/**
 * GETXATTR/LISTXATTR: a size of 0 asks only how big the value is (getxattr_out); a buffer too
 * small for it is ERANGE; otherwise the value itself.
 */
export function sizedReply(value: Buffer, size: number): Buffer {
  if (size === 0) {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(value.length, 0);
    return out;
  }
  if (value.length > size) throw new FuseErrno('ERANGE');
  return value;
}
