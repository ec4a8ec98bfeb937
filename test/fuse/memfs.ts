/** A small in-memory filesystem for the FUSE tests: every file type, xattrs, a deliberately slow file. */
import { createHash } from 'node:crypto';
import {
  FuseErrno,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  SEEK_DATA,
  SEEK_HOLE,
  type DirEntryPlus,
  type FuseAttr,
  type FuseEntry,
  type FuseFilesystem,
  type OpenResult,
  type ReaddirRequest,
  type RequestContext,
  type StatFs,
  type Timespec,
} from '../../src/fuse/index.js';

interface MemNode {
  attr: FuseAttr;
  data?: Buffer;
  target?: string;
  children?: Map<string, number>;
  parent: number;
  xattrs: Map<string, Buffer>;
  /** Reads of this file wait for releaseSlow() (or the request's abort). */
  slow?: boolean;
  /** Data extents [start, end) for SEEK_DATA/SEEK_HOLE; absent means all data. */
  extents?: [number, number][];
}

export const T0: Timespec = { sec: 1_700_000_000, nsec: 123_456_789 };

/** Deterministic bytes that differ per seed, so a misplaced chunk shows up in a hash. */
export function pattern(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if (i + 4 <= size) out.writeUInt32LE(x, i);
    else for (let j = i; j < size; j++) out[j] = (x >>> ((j - i) * 8)) & 0xff;
  }
  return out;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export class MemFs implements FuseFilesystem {
  readonly nodes = new Map<number, MemNode>();
  readonly calls = new Map<string, number>();
  readonly readSizes: number[] = [];
  abortedReads = 0;
  private nextIno = 2;
  private releaseGate!: () => void;
  private gate!: Promise<void>;
  /** Resolves each time a slow read starts waiting. */
  slowReadStarted: Promise<void>;
  private notifySlowStart!: () => void;

  constructor() {
    this.nodes.set(1, { attr: this.attrFor(1, S_IFDIR | 0o755, 0), children: new Map(), parent: 1, xattrs: new Map() });
    this.resetSlow();
    this.slowReadStarted = new Promise((r) => (this.notifySlowStart = r));
  }

  resetSlow(): void {
    this.gate = new Promise((r) => (this.releaseGate = r));
  }

  releaseSlow(): void {
    this.releaseGate();
  }

  private attrFor(ino: number, mode: number, size: number, extra: Partial<FuseAttr> = {}): FuseAttr {
    return { ino, size, blocks: Math.ceil(size / 512), atime: T0, mtime: T0, ctime: T0, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096, ...extra };
  }

  private add(parent: number, name: string, node: Omit<MemNode, 'parent' | 'xattrs'> & { xattrs?: Map<string, Buffer> }): number {
    const dir = this.nodes.get(parent)?.children;
    if (!dir) throw new Error(`not a dir: ${parent}`);
    dir.set(name, node.attr.ino);
    this.nodes.set(node.attr.ino, { xattrs: new Map(), ...node, parent });
    return node.attr.ino;
  }

  mkdir(parent: number, name: string, extra: Partial<FuseAttr> = {}): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: this.attrFor(ino, S_IFDIR | 0o755, 0, extra), children: new Map() });
  }

  file(parent: number, name: string, data: Buffer, extra: Partial<FuseAttr> & { slow?: boolean; extents?: [number, number][] } = {}): number {
    const { slow, extents, ...attr } = extra;
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: this.attrFor(ino, S_IFREG | 0o644, data.length, attr), data, slow, extents });
  }

  symlink(parent: number, name: string, target: string): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: this.attrFor(ino, S_IFLNK | 0o777, Buffer.byteLength(target)), target });
  }

  special(parent: number, name: string, mode: number, rdev = 0): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: this.attrFor(ino, mode, 0, { rdev }) });
  }

  /** A second name for an existing inode. */
  link(parent: number, name: string, ino: number): void {
    this.nodes.get(parent)!.children!.set(name, ino);
    this.nodes.get(ino)!.attr.nlink++;
  }

  setXattr(ino: number, name: string, value: Buffer): void {
    this.nodes.get(ino)!.xattrs.set(name, value);
  }

  private count(op: string): void {
    this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
  }

  private node(ino: number): MemNode {
    const n = this.nodes.get(ino);
    if (!n) throw new FuseErrno('ENOENT', `inode ${ino}`);
    return n;
  }

  private attr(ino: number): FuseAttr {
    const n = this.node(ino);
    if (!n.children) return n.attr;
    let subdirs = 0;
    for (const child of n.children.values()) if (this.nodes.get(child)!.children) subdirs++;
    return { ...n.attr, nlink: 2 + subdirs };
  }

  private entry(ino: number): FuseEntry {
    return { ino, attr: this.attr(ino) };
  }

  async lookup(parent: number, nameBytes: Buffer): Promise<FuseEntry | null> {
    const name = nameBytes.toString();
    this.count('lookup');
    const ino = this.node(parent).children?.get(name);
    return ino === undefined ? null : this.entry(ino);
  }

  async getattr(ino: number): Promise<FuseAttr> {
    this.count('getattr');
    return this.attr(ino);
  }

  async readlink(ino: number): Promise<string> {
    const t = this.node(ino).target;
    if (t === undefined) throw new FuseErrno('EINVAL');
    return t;
  }

  async open(ino: number): Promise<OpenResult> {
    this.count('open');
    const n = this.node(ino);
    // The slow file bypasses the page cache so its reads are synchronous, interruptible requests.
    return n.slow ? { directIo: true } : { keepCache: true };
  }

  async read(ino: number, _fh: number, offset: number, size: number, ctx: RequestContext): Promise<Buffer> {
    this.count('read');
    this.readSizes.push(size);
    const n = this.node(ino);
    if (n.slow) {
      this.notifySlowStart();
      this.slowReadStarted = new Promise((r) => (this.notifySlowStart = r));
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          this.abortedReads++;
          reject(new FuseErrno('EINTR'));
        };
        if (ctx.signal.aborted) return onAbort();
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        void this.gate.then(() => {
          ctx.signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    return (n.data ?? Buffer.alloc(0)).subarray(offset, offset + size);
  }

  private list(ino: number): DirEntryPlus[] {
    const n = this.node(ino);
    if (!n.children) throw new FuseErrno('ENOTDIR');
    const names: [string, number][] = [['.', ino], ['..', n.parent], ...n.children];
    return names.map(([name, child], i) => ({ name, ino: child, mode: this.node(child).attr.mode & S_IFMT, next: i + 1 }));
  }

  async readdir(ino: number, req: ReaddirRequest): Promise<DirEntryPlus[]> {
    this.count('readdir');
    return this.list(ino).slice(req.offset);
  }

  async readdirplus(ino: number, req: ReaddirRequest): Promise<DirEntryPlus[]> {
    this.count('readdirplus');
    return this.list(ino)
      .slice(req.offset)
      .map((e) => (e.name === '.' || e.name === '..' ? e : { ...e, entry: this.entry(e.ino) }));
  }

  async statfs(): Promise<StatFs> {
    return { blocks: 1000, bfree: 0, bavail: 0, files: this.nodes.size, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    return this.node(ino).xattrs.get(name) ?? null; // null: ENODATA, as the server answers it
  }

  async listxattr(ino: number): Promise<string[]> {
    return [...this.node(ino).xattrs.keys()];
  }

  async lseek(ino: number, _fh: number, offset: number, whence: number): Promise<number> {
    this.count('lseek');
    const n = this.node(ino);
    const size = n.attr.size;
    if (offset >= size) throw new FuseErrno('ENXIO');
    const extents = n.extents ?? [[0, size]];
    if (whence === SEEK_DATA) {
      for (const [s, e] of extents) if (offset < e) return Math.max(s, offset);
      throw new FuseErrno('ENXIO');
    }
    if (whence === SEEK_HOLE) {
      for (const [s, e] of extents) if (offset >= s && offset < e) return e;
      return offset;
    }
    throw new FuseErrno('EINVAL');
  }
}

export { S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG };
