/**
 * The image as a FUSE filesystem: names, attributes, links and xattrs answered from the index in
 * place; file bytes read through the storage tiers. The image never changes, so everything may be
 * cached by the kernel for long.
 */
import {
  FuseErrno,
  makeDev,
  SEEK_DATA,
  SEEK_HOLE,
  type DirEntry,
  type DirEntryPlus,
  type FuseAttr,
  type FuseEntry,
  type FuseFilesystem,
  type MountOptions,
  type OpenResult,
  type ReaddirRequest,
  type RequestContext,
  type StatFs,
} from '../fuse/index.js';
import type { ImageIndex } from '../index/reader.js';
import { emptyAttr, S_IFDIR, S_IFMT, S_IFREG, type Attr } from '../index/types.js';
import { indexLayers } from '../storage/index-layers.js';
import type { Storage } from '../storage/storage.js';
import type { LayerRecord } from '../storage/types.js';
import { isClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { ReadBuffers } from './read-buffers.js';

/** One day: the tree cannot change while it is mounted. */
export const IMMUTABLE_TIMEOUT_SECONDS = 86_400;

/** What a directory reports as its size (as ext4 shows a small directory). */
const DIR_SIZE = 4096;
const BLOCK = 4096;
const W_OK = 2;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
/** fuse_dirent header, and fuse_entry_out before it in readdirplus: for sizing a reply. */
const DIRENT_HEADER = 24;
const ENTRY_OUT = 128;

/**
 * Kernel readahead: 8 MiB keeps several 1 MiB READs in flight on a sequential read (about twice the
 * throughput of the 1 MiB default in bench/mount/seq-read.ts); random reads keep small windows.
 */
export const DEFAULT_READAHEAD_KB = 8192;

/** Mount options that suit an immutable image: long timeouts, negative lookups cached, page cache kept. */
export function imageMountOptions(timeoutSeconds = IMMUTABLE_TIMEOUT_SECONDS): Pick<
  MountOptions,
  'entryTimeout' | 'attrTimeout' | 'negativeTimeout' | 'keepCache' | 'cacheDir' | 'readaheadKb' | 'posixAcl'
> {
  return {
    entryTimeout: timeoutSeconds, attrTimeout: timeoutSeconds, negativeTimeout: timeoutSeconds,
    keepCache: true, cacheDir: true, readaheadKb: DEFAULT_READAHEAD_KB,
    // `ls -l` asks every entry for its ACLs; with this the kernel asks us once per inode.
    posixAcl: true,
  };
}

export interface ImageFilesystemOptions {
  logger?: Logger;
  /** Entry and attribute timeouts given with each answer, in seconds. Default one day. */
  timeoutSeconds?: number;
}

/** An open file: where its bytes are, resolved once at open so a read does no lookup. */
interface OpenFile {
  layer: LayerRecord;
  offset: number;
  size: number;
}

/** Open files by inode, with how many opens hold each. */
interface HeldFile extends OpenFile {
  refs: number;
}

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export class ImageFilesystem implements FuseFilesystem {
  private readonly layers: LayerRecord[];
  private readonly open$ = new Map<number, HeldFile>();
  private readonly buffers = new ReadBuffers();
  private readonly scratch: Attr = emptyAttr();
  private readonly timeout: number;
  private readonly log: Logger;
  private rootNlink = 0;
  private statfsCache: StatFs | undefined;

  constructor(
    readonly index: ImageIndex,
    readonly storage: Storage,
    opts: ImageFilesystemOptions = {},
  ) {
    this.layers = indexLayers(index);
    this.timeout = opts.timeoutSeconds ?? IMMUTABLE_TIMEOUT_SECONDS;
    this.log = opts.logger ?? silentLogger;
  }

  /** Files open now (for tests and metrics). */
  get openFiles(): number {
    return this.open$.size;
  }

  /** READ buffers whose replies have not been written yet (for tests: 0 when idle). */
  get readsInFlight(): number {
    return this.buffers.outstanding;
  }

  attr(ino: number): FuseAttr {
    const a = this.index.getattr(this.known(ino), this.scratch);
    const type = a.mode & S_IFMT;
    const time = { sec: a.mtimeSec, nsec: a.mtimeNsec };
    const size = type === S_IFDIR ? DIR_SIZE : a.size;
    return {
      ino,
      size,
      blocks: type === S_IFREG || type === S_IFDIR ? Math.ceil(size / 512) : 0,
      atime: time,
      mtime: time,
      ctime: time,
      mode: a.mode,
      nlink: ino === this.index.rootIno ? this.rootLinks() : a.nlink,
      uid: a.uid,
      gid: a.gid,
      rdev: a.rdevMajor || a.rdevMinor ? makeDev(a.rdevMajor, a.rdevMinor) : 0,
      blksize: BLOCK,
    };
  }

  private entry(ino: number): FuseEntry {
    return { ino, attr: this.attr(ino), entryTimeout: this.timeout, attrTimeout: this.timeout };
  }

  /** The root has no record of its own links in a tar: 2 plus one per subdirectory, as a real directory. */
  private rootLinks(): number {
    if (this.rootNlink === 0) {
      let subdirs = 0;
      this.index.readdir(this.index.rootIno, 0, (_name, _ino, mode) => {
        if ((mode & S_IFMT) === S_IFDIR) subdirs++;
      });
      this.rootNlink = 2 + subdirs;
    }
    return this.rootNlink;
  }

  private known(ino: number): number {
    if (!this.index.has(ino)) throw new FuseErrno('ENOENT', `no inode ${ino}`);
    return ino;
  }

  async lookup(parent: number, name: Buffer): Promise<FuseEntry | null> {
    if (name.equals(DOT)) return this.entry(this.known(parent));
    if (name.equals(DOTDOT)) return this.entry(this.index.parent(this.known(parent)));
    const ino = this.index.lookup(parent, name);
    return ino === 0 ? null : this.entry(ino);
  }

  async getattr(ino: number): Promise<FuseAttr> {
    return this.attr(ino);
  }

  async readlink(ino: number): Promise<Buffer> {
    this.known(ino);
    try {
      return this.index.readlink(ino);
    } catch {
      throw new FuseErrno('EINVAL', `inode ${ino} is not a symlink`);
    }
  }

  async open(ino: number, flags: number): Promise<OpenResult> {
    if ((flags & O_ACCMODE) !== 0 || flags & O_TRUNC) throw new FuseErrno('EROFS');
    const held = this.open$.get(ino);
    if (held) held.refs++;
    else {
      const loc = this.index.dataLocation(this.known(ino));
      if (!loc) throw new FuseErrno('EISDIR');
      this.open$.set(ino, { layer: this.layers[loc.layer]!, offset: loc.offset, size: loc.size, refs: 1 });
    }
    // The handle is the inode: a server that takes over the connection after a restart finds
    // every handle the kernel holds meaningful without any state from the one before.
    return { fh: ino, keepCache: true };
  }

  release(ino: number): void {
    const held = this.open$.get(ino);
    if (held && --held.refs <= 0) this.open$.delete(ino);
  }

  async read(ino: number, _fh: number, offset: number, size: number, ctx: RequestContext): Promise<Uint8Array> {
    let file: OpenFile | undefined = this.open$.get(ino);
    if (!file) {
      // Opened before this server took the connection over (or a read without an open): resolve it here.
      const loc = this.index.dataLocation(this.known(ino));
      if (!loc) throw new FuseErrno('EISDIR');
      file = { layer: this.layers[loc.layer]!, offset: loc.offset, size: loc.size };
    }
    const n = Math.min(size, file.size - offset);
    if (n <= 0) return EMPTY;
    const buf = this.buffers.take(n);
    try {
      const got = await this.storage.readInto(file.layer, file.offset + offset, buf, { signal: ctx.signal });
      return got === n ? buf : buf.subarray(0, got);
    } catch (err) {
      this.buffers.give(buf);
      if (ctx.signal.aborted) throw new FuseErrno('EINTR');
      // Never a wrong byte and never a hang: what the tiers cannot give in time is an I/O error.
      this.log.warn({ err, ino, offset, size: n, layer: file.layer.diffId, code: isClipError(err) ? err.code : undefined }, 'fs: read failed');
      throw new FuseErrno('EIO', err instanceof Error ? err.message : String(err));
    }
  }

  readDone(data: Uint8Array): void {
    this.buffers.give(data);
  }

  async opendir(ino: number): Promise<OpenResult> {
    if ((this.index.mode(this.known(ino)) & S_IFMT) !== S_IFDIR) throw new FuseErrno('ENOTDIR');
    // The kernel keeps a directory's cached entries across opens only with KEEP_CACHE as well.
    return { cacheDir: true, keepCache: true };
  }

  /**
   * Cookies: 1 after ".", 2 after "..", then 3 + i after the i-th entry of the index (whose own
   * resume offsets are stable), so a later request starts exactly where the last one stopped.
   */
  async readdir(ino: number, req: ReaddirRequest): Promise<DirEntry[]> {
    return this.listDir(ino, req, false);
  }

  async readdirplus(ino: number, req: ReaddirRequest): Promise<DirEntryPlus[]> {
    return this.listDir(ino, req, true);
  }

  private listDir(ino: number, req: ReaddirRequest, plus: boolean): DirEntryPlus[] {
    const index = this.index;
    if ((index.mode(this.known(ino)) & S_IFMT) !== S_IFDIR) throw new FuseErrno('ENOTDIR');
    const out: DirEntryPlus[] = [];
    const overhead = DIRENT_HEADER + (plus ? ENTRY_OUT : 0) + 7;
    let room = req.size;
    if (req.offset <= 0) {
      out.push({ name: '.', ino, mode: S_IFDIR, next: 1 });
      room -= overhead + 1;
    }
    if (req.offset <= 1) {
      out.push({ name: '..', ino: index.parent(ino), mode: S_IFDIR, next: 2 });
      room -= overhead + 2;
    }
    index.readdir(ino, Math.max(0, req.offset - 2), (name, child, mode, next) => {
      if (room < overhead + name.length) return false;
      room -= overhead + name.length;
      const e: DirEntryPlus = { name, ino: child, mode, next: next + 2 };
      if (plus) e.entry = this.entry(child);
      out.push(e);
      return true;
    });
    return out;
  }

  async statfs(): Promise<StatFs> {
    if (!this.statfsCache) {
      const bytes = this.index.layers.reduce((n, l) => n + l.uncompressedSize, 0);
      this.statfsCache = {
        blocks: Math.ceil(bytes / BLOCK), bfree: 0, bavail: 0,
        files: this.index.inodeCount, ffree: 0, bsize: BLOCK, namelen: 255, frsize: BLOCK,
      };
    }
    return this.statfsCache;
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    return this.index.getxattr(this.known(ino), name) ?? null;
  }

  async listxattr(ino: number): Promise<string[]> {
    return this.index.listxattr(this.known(ino));
  }

  async access(ino: number, mask: number): Promise<void> {
    this.known(ino);
    if (mask & W_OK) throw new FuseErrno('EROFS');
  }

  async lseek(ino: number, _fh: number, offset: number, whence: number): Promise<number> {
    const size = this.open$.get(ino)?.size ?? this.index.dataLocation(this.known(ino))?.size ?? 0;
    if (offset >= size) throw new FuseErrno('ENXIO');
    if (whence === SEEK_DATA) return offset;
    if (whence === SEEK_HOLE) return size; // no holes: a layer's bytes are all data
    throw new FuseErrno('EINVAL');
  }
}

const EMPTY = new Uint8Array(0);
