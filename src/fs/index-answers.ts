/**
 * What the index alone answers about the image: names, attributes, links, listings, xattrs. Pure
 * and synchronous, so the same object serves ImageFilesystem on the main thread and the FUSE
 * reader thread (index-thread.ts), which answers these requests where it reads them.
 */
// From the modules themselves, not src/fuse/index.ts: this runs in every reader thread, and the
// barrel would load the whole FUSE server (child_process, the logger) into each one.
import { FuseErrno } from '../fuse/errno.js';
import { makeDev, type DirEntry, type DirEntryPlus, type FuseAttr, type FuseEntry, type OpenResult, type ReaddirRequest, type StatFs } from '../fuse/types.js';
import type { SyncFilesystem } from '../fuse/sync-answers.js';
import type { ImageIndex } from '../index/reader.js';
import { emptyAttr, S_IFDIR, S_IFMT, S_IFREG, type Attr } from '../index/types.js';

/** One day: the tree cannot change while it is mounted. */
export const IMMUTABLE_TIMEOUT_SECONDS = 86_400;

/** What a directory reports as its size (as ext4 shows a small directory). */
const DIR_SIZE = 4096;
const BLOCK = 4096;
const W_OK = 2;
/** fuse_dirent header, and fuse_entry_out before it in readdirplus: for sizing a reply. */
const DIRENT_HEADER = 24;
const ENTRY_OUT = 128;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export class IndexAnswers implements SyncFilesystem {
  private readonly scratch: Attr = emptyAttr();
  private rootNlink = 0;
  private statfsCache: StatFs | undefined;

  constructor(
    readonly index: ImageIndex,
    /** Entry and attribute timeouts given with each answer, in seconds. */
    private readonly timeout: number = IMMUTABLE_TIMEOUT_SECONDS,
  ) {}

  /** The inode, if the index has it; ENOENT otherwise. */
  known(ino: number): number {
    if (!this.index.has(ino)) throw new FuseErrno('ENOENT', `no inode ${ino}`);
    return ino;
  }

  getattr(ino: number): FuseAttr {
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
    return { ino, attr: this.getattr(ino), entryTimeout: this.timeout, attrTimeout: this.timeout };
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

  lookup(parent: number, name: Buffer): FuseEntry | null {
    if (name.equals(DOT)) return this.entry(this.known(parent));
    if (name.equals(DOTDOT)) return this.entry(this.index.parent(this.known(parent)));
    const ino = this.index.lookup(parent, name);
    return ino === 0 ? null : this.entry(ino);
  }

  readlink(ino: number): Buffer {
    this.known(ino);
    try {
      return this.index.readlink(ino);
    } catch {
      throw new FuseErrno('EINVAL', `inode ${ino} is not a symlink`);
    }
  }

  opendir(ino: number): OpenResult {
    if ((this.index.mode(this.known(ino)) & S_IFMT) !== S_IFDIR) throw new FuseErrno('ENOTDIR');
    // The kernel keeps a directory's cached entries across opens only with KEEP_CACHE as well.
    return { cacheDir: true, keepCache: true };
  }

  /**
   * Cookies: 1 after ".", 2 after "..", then 3 + i after the i-th entry of the index (whose own
   * resume offsets are stable), so a later request starts exactly where the last one stopped.
   */
  readdir(ino: number, req: ReaddirRequest): DirEntry[] {
    return this.listDir(ino, req, false);
  }

  readdirplus(ino: number, req: ReaddirRequest): DirEntryPlus[] {
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

  statfs(): StatFs {
    if (!this.statfsCache) {
      const bytes = this.index.layers.reduce((n, l) => n + l.uncompressedSize, 0);
      this.statfsCache = {
        blocks: Math.ceil(bytes / BLOCK), bfree: 0, bavail: 0,
        files: this.index.inodeCount, ffree: 0, bsize: BLOCK, namelen: 255, frsize: BLOCK,
      };
    }
    return this.statfsCache;
  }

  getxattr(ino: number, name: string): Buffer | null {
    return this.index.getxattr(this.known(ino), name) ?? null;
  }

  listxattr(ino: number): string[] {
    return this.index.listxattr(this.known(ino));
  }

  access(ino: number, mask: number): void {
    this.known(ino);
    if (mask & W_OK) throw new FuseErrno('EROFS');
  }
}
