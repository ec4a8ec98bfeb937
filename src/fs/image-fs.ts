/**
 * The image as a FUSE filesystem: names, attributes, links and xattrs answered from the index in
 * place; file bytes read through the storage tiers. The image never changes, so everything may be
 * cached by the kernel for long.
 */
import {
  FuseErrno,
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
  type ThreadAnswers,
} from '../fuse/index.js';
import type { ImageIndex } from '../index/reader.js';
import { indexLayers } from '../storage/index-layers.js';
import type { Storage } from '../storage/storage.js';
import type { LayerRecord } from '../storage/types.js';
import { isClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { siblingModule } from '../util/worker.js';
import { IMMUTABLE_TIMEOUT_SECONDS, IndexAnswers } from './index-answers.js';
import type { IndexThreadData } from './index-thread.js';
import { ReadBuffers } from './read-buffers.js';

export { IMMUTABLE_TIMEOUT_SECONDS } from './index-answers.js';


const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

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


export class ImageFilesystem implements FuseFilesystem {
  private readonly layers: LayerRecord[];
  private readonly open$ = new Map<number, HeldFile>();
  private readonly buffers = new ReadBuffers();
  /** Names, attributes, listings and xattrs, from the index alone. */
  readonly answers: IndexAnswers;
  private readonly timeoutSeconds: number;
  private shared: ThreadAnswers | undefined;
  private readonly log: Logger;

  constructor(
    readonly index: ImageIndex,
    readonly storage: Storage,
    opts: ImageFilesystemOptions = {},
  ) {
    this.layers = indexLayers(index);
    this.timeoutSeconds = opts.timeoutSeconds ?? IMMUTABLE_TIMEOUT_SECONDS;
    this.answers = new IndexAnswers(index, this.timeoutSeconds);
    this.log = opts.logger ?? silentLogger;
  }

  /**
   * The reader thread answers what the index alone can, over a shared copy of the index bytes
   * (made once: the index is immutable), so metadata requests never wait for this thread.
   */
  get threadAnswers(): ThreadAnswers {
    if (!this.shared) {
      const own = this.index.buffer;
      // An index loaded into shared memory (mount/open-image.ts loadIndex) is not copied again.
      const whole = own.buffer instanceof SharedArrayBuffer && own.byteOffset === 0 && own.length === own.buffer.byteLength;
      const sab = whole ? (own.buffer as SharedArrayBuffer) : new SharedArrayBuffer(own.length);
      if (!whole) own.copy(Buffer.from(sab));
      const data: IndexThreadData = { index: sab, file: this.index.file, timeoutSeconds: this.timeoutSeconds };
      this.shared = { module: siblingModule(import.meta.url, 'index-thread').href, data };
    }
    return this.shared;
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
    return this.answers.getattr(ino);
  }

  private known(ino: number): number {
    return this.answers.known(ino);
  }

  async lookup(parent: number, name: Buffer): Promise<FuseEntry | null> {
    return this.answers.lookup(parent, name);
  }

  async getattr(ino: number): Promise<FuseAttr> {
    return this.answers.getattr(ino);
  }

  async readlink(ino: number): Promise<Buffer> {
    return this.answers.readlink(ino);
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
    return this.answers.opendir(ino);
  }

  async readdir(ino: number, req: ReaddirRequest): Promise<DirEntry[]> {
    return this.answers.readdir(ino, req);
  }

  async readdirplus(ino: number, req: ReaddirRequest): Promise<DirEntryPlus[]> {
    return this.answers.readdirplus(ino, req);
  }

  async statfs(): Promise<StatFs> {
    return this.answers.statfs();
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    return this.answers.getxattr(ino, name);
  }

  async listxattr(ino: number): Promise<string[]> {
    return this.answers.listxattr(ino);
  }

  async access(ino: number, mask: number): Promise<void> {
    this.answers.access(ino, mask);
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
