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
import type { ThreadReadsData } from './read-thread.js';

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
  /** READs of chunks verified in the disk cache answered in the FUSE reader threads. Default true. */
  threadReads?: boolean;
}

/** An open file: where its bytes are, resolved once at open so a read does no lookup. */
interface OpenFile {
  layer: LayerRecord;
  /** The layer's position in the index (what a profile names). */
  layerAt: number;
  offset: number;
  size: number;
}

/** Takes note of the reads of a mount's start (src/profile/recorder.ts). */
export interface ReadRecorder {
  readonly active: boolean;
  /** Bytes [offset, offset + length) of the layer at position `layer` in the index were read. */
  note(layer: number, offset: number, length: number, ino: number): void;
}

/** Open files by inode, with how many opens hold each. */
interface HeldFile extends OpenFile {
  refs: number;
}

/** The module FUSE reader threads answer a mount's requests with (threadAnswers); a thread started ahead loads it. */
export const THREAD_ANSWERS_MODULE = siblingModule(import.meta.url, 'index-thread').href;

export class ImageFilesystem implements FuseFilesystem {
  private readonly layers: LayerRecord[];
  private readonly open$ = new Map<number, HeldFile>();
  private readonly buffers = new ReadBuffers();
  /** Names, attributes, listings and xattrs, from the index alone. */
  readonly answers: IndexAnswers;
  private readonly timeoutSeconds: number;
  private shared: ThreadAnswers | undefined;
  private readonly log: Logger;
  /** Set while a startup profile may be recorded (src/profile/); see `recorder`. */
  private rec: ReadRecorder | undefined;
  /** False when the mount was made with threadReads: false: the recorder never turns them on. */
  private readonly threadReadsAllowed: boolean;
  /** Int32 [0]: 1 while the reader threads may answer READs (setThreadReads). */
  private readonly readSwitch = new Int32Array(new SharedArrayBuffer(4));
  /** READs and bytes the reader threads answered, per layer, and how much of it the metrics have. */
  private threadCounts: Int32Array | undefined;
  private readonly folded: number[] = [];

  constructor(
    readonly index: ImageIndex,
    readonly storage: Storage,
    opts: ImageFilesystemOptions = {},
  ) {
    this.layers = indexLayers(index);
    this.timeoutSeconds = opts.timeoutSeconds ?? IMMUTABLE_TIMEOUT_SECONDS;
    this.answers = new IndexAnswers(index, this.timeoutSeconds);
    this.log = opts.logger ?? silentLogger;
    this.threadReadsAllowed = opts.threadReads !== false;
    this.readSwitch[0] = this.threadReadsAllowed ? 1 : 0;
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
      const data: IndexThreadData = { index: sab, file: this.index.file, timeoutSeconds: this.timeoutSeconds, reads: this.threadReadsData() };
      this.shared = { module: THREAD_ANSWERS_MODULE, data };
    }
    return this.shared;
  }

  /**
   * The recorder of a startup profile. While one is set, every READ must reach this thread (reads
   * answered in the FUSE reader threads would be missing from the profile): setting it switches
   * thread READs off; clearing it, or its recording ending, switches them on again.
   */
  get recorder(): ReadRecorder | undefined {
    return this.rec;
  }

  set recorder(r: ReadRecorder | undefined) {
    this.rec = r;
    this.setThreadReads(r === undefined && this.threadReadsAllowed);
  }

  /** True while a profile is recorded. */
  get recording(): boolean {
    return this.rec?.active === true;
  }

  private threadReadsData(): ThreadReadsData {
    const disk = this.storage.disk;
    const counts = new SharedArrayBuffer(8 * this.layers.length);
    this.threadCounts = new Int32Array(counts);
    foldEverySecond(this);
    return {
      switch: this.readSwitch.buffer as SharedArrayBuffer,
      layers: this.layers.map((l) => ({ path: disk.pathOf(l), chunkSize: l.chunkSize, state: disk.sharedState(l) })),
      counts,
    };
  }

  /**
   * Let the FUSE reader threads answer READs of verified cached chunks (on), or send every READ to
   * this thread's read() (off: while a startup profile is recorded, say). Takes effect with the
   * next READ; one shared word, checked per READ.
   */
  setThreadReads(on: boolean): void {
    Atomics.store(this.readSwitch, 0, on ? 1 : 0);
  }

  get threadReads(): boolean {
    return Atomics.load(this.readSwitch, 0) === 1;
  }

  /**
   * Add what the reader threads served to the storage metrics (disk hits and bytes), and mark
   * their layers used (the disk cache's LRU, and its check that a file was not evicted by another
   * process). Runs on main-thread READs and every second while the mount is served.
   */
  foldThreadReads(): void {
    const c = this.threadCounts;
    if (!c) return;
    const m = this.storage.metrics;
    for (let n = 0; n < this.layers.length; n++) {
      const reads = c[2 * n]! >>> 0;
      const bytes = c[2 * n + 1]! >>> 0;
      const dr = (reads - (this.folded[2 * n] ?? 0)) >>> 0;
      const db = (bytes - (this.folded[2 * n + 1] ?? 0)) >>> 0;
      if (dr === 0) continue;
      this.folded[2 * n] = reads;
      this.folded[2 * n + 1] = bytes;
      m.requests.inc({ tier: 'disk' }, dr);
      m.hits.inc({ tier: 'disk' }, dr);
      m.bytes.inc({ tier: 'disk' }, db);
      this.storage.disk.tryAcquire(this.layers[n]!)?.release();
    }
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
      this.open$.set(ino, { layer: this.layers[loc.layer]!, layerAt: loc.layer, offset: loc.offset, size: loc.size, refs: 1 });
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
    if (this.threadCounts) this.foldThreadReads();
    let file: OpenFile | undefined = this.open$.get(ino);
    if (!file) {
      // Opened before this server took the connection over (or a read without an open): resolve it here.
      const loc = this.index.dataLocation(this.known(ino));
      if (!loc) throw new FuseErrno('EISDIR');
      file = { layer: this.layers[loc.layer]!, layerAt: loc.layer, offset: loc.offset, size: loc.size };
    }
    const n = Math.min(size, file.size - offset);
    if (n <= 0) return EMPTY;
    if (this.rec) {
      if (this.rec.active) this.rec.note(file.layerAt, file.offset + offset, n, ino);
      else this.recorder = undefined;
    }
    const buf = this.buffers.take(n);
    try {
      // The signal only if the read waits on a fetch: a disk hit builds no AbortController.
      const got = await this.storage.readInto(file.layer, file.offset + offset, buf, { signal: () => ctx.signal });
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

/**
 * Fold a filesystem's thread reads every second while it lives. The timer holds it only weakly, and
 * its closure is made here, where it can capture nothing else: made inside a method it shared that
 * method's context, whose store (its disk cache, whose metrics reach back to the filesystem) kept
 * every unmounted image's filesystem and index for the server's life.
 */
function foldEverySecond(fs: ImageFilesystem): void {
  const self = new WeakRef(fs);
  const timer = setInterval(() => {
    const live = self.deref();
    if (live) live.foldThreadReads();
    else clearInterval(timer);
  }, 1000);
  timer.unref();
}
