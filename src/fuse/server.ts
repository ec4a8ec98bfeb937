import { availableParallelism } from 'node:os';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { FuseChannel } from './channel.js';
import { readerPool, type ReaderPolicy } from './reader-pool.js';
import { attrOut, entryOut, negativeEntryOut, packDirents, packDirentsPlus, statfsOut, type Timeouts } from './encode.js';
import { Errno, FuseErrno, toErrno } from './errno.js';
import {
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_MIN_READ_BUFFER,
  IN_HEADER_SIZE,
  INIT_OUT_SIZE,
  InitFlag,
  NotifyCode,
  OPEN_OUT_SIZE,
  Opcode,
  OpenFlag,
  WRITE_IN_SIZE,
  WRITE_OPCODES,
  opcodeName,
  readCString,
  readInHeader,
  type InHeader,
} from './protocol.js';
import { sizedReply } from './sync-answers.js';
import { defaultMaxPages } from './read-size.js';
import { wholeNumberSetting } from '../util/setting.js';
import { MAX_TIMER_MS, threadTuning } from './env-options.js';
import type { FuseFilesystem, OpenResult, RequestContext, StatFs } from './types.js';

export interface FuseServerOptions {
  logger?: Logger;
  /** Seconds the kernel may trust a name lookup (an immutable tree wants long ones). Default 1. */
  entryTimeout?: number;
  /** Seconds the kernel may trust attributes. Default 1. */
  attrTimeout?: number;
  /** Seconds the kernel remembers that a name does not exist; 0 turns negative caching off. Default 0. */
  negativeTimeout?: number;
  /** FOPEN_KEEP_CACHE for opens whose result does not say. Default false. */
  keepCache?: boolean;
  /** FOPEN_CACHE_DIR for opendirs whose result does not say. Default false. */
  cacheDir?: boolean;
  /**
   * Negotiate FUSE_POSIX_ACL: the kernel reads system.posix_acl_* through GETXATTR once per inode,
   * caches the answer ("none" included) and enforces it. Default false.
   */
  posixAcl?: boolean;
  /** Largest READ the kernel sends, in pages of 4 KiB (MAX_PAGES). Default 256 (1 MiB), or what a splice can carry (read-size.ts). */
  maxPages?: number;
  /** Largest WRITE the kernel may send; also sizes the request buffer. Default 1 MiB. */
  maxWrite?: number;
  /** Async requests (readahead, background reads) the kernel keeps in flight. Default 128. */
  maxBackground?: number;
  /** Above this many background requests the kernel counts the filesystem congested. Default 3/4 of maxBackground. */
  congestionThreshold?: number;
  /**
   * Reader threads for this connection, all reading its one descriptor: a number is that many,
   * always. Default: CLIP_FUSE_THREADS if set, else as many as the load asks for (readerPolicy).
   */
  readerThreads?: number;
  /** With no fixed count: the most threads (default CLIP_FUSE_MAX_THREADS, else DEFAULT_MAX_READER_THREADS). */
  maxReaderThreads?: number;
  /** An added thread that served nothing for this long ends (default CLIP_FUSE_IDLE_MS, else 30 000). */
  readerIdleMs?: number;
}

export const MAX_READER_THREADS = 16;
/**
 * The cap when the count follows the load: the CPUs this process may use, from 2 to 4. Each added
 * thread is a V8 isolate (~9 MB under load). On 2 cores, two instead of four: 20-29 MB less under
 * load (32 random readers: +15 MB instead of +44), 10-20 % fewer preads/s for 8 random readers,
 * no steady difference for one reader or sequential reads (bench/server/RESULTS.md, session 10).
 * More than 4 was never measured to pay.
 */
export const DEFAULT_MAX_READER_THREADS = Math.min(4, Math.max(2, availableParallelism()));
/**
 * An added reader thread ends after this long without a request: long enough to span the pauses
 * between bursts (a thread costs about 0.1 s of CPU to start, and the bench's rounds lost that
 * much per workload with 5 s), short enough that a quiet server is back to one thread soon.
 */
const DEFAULT_READER_IDLE_MS = 30_000;

/**
 * How many reader threads serve a connection: `readerThreads` (or CLIP_FUSE_THREADS) fixes the
 * count; otherwise one, and more up to the cap while requests queue.
 */
export function readerPolicy(opts: Pick<FuseServerOptions, 'readerThreads' | 'maxReaderThreads' | 'readerIdleMs'> = {}): ReaderPolicy {
  const tuning = threadTuning(); // checked here, before serving
  const idleMs = wholeNumberSetting({ value: opts.readerIdleMs, option: 'readerIdleMs', env: 'CLIP_FUSE_IDLE_MS' }, 1, MAX_TIMER_MS, 'ms') ?? DEFAULT_READER_IDLE_MS;
  const count = (value: number | undefined, option: string, env: string): number | undefined =>
    wholeNumberSetting({ value, option, env }, 1, MAX_READER_THREADS, 'reader threads');
  const fixed = count(opts.readerThreads, 'readerThreads', 'CLIP_FUSE_THREADS');
  if (fixed !== undefined) return { min: fixed, max: fixed, idleMs, tuning };
  return { min: 1, max: count(opts.maxReaderThreads, 'maxReaderThreads', 'CLIP_FUSE_MAX_THREADS') ?? DEFAULT_MAX_READER_THREADS, idleMs, tuning };
}

/** The largest WRITE the kernel may send when `maxWrite` is not given (FuseServerOptions). */
const DEFAULT_MAX_WRITE = 1024 * 1024;

/** The reader threads' request buffer for a connection whose largest WRITE is `maxWrite`. */
function requestBufferSize(maxWrite: number): number {
  return Math.max(FUSE_MIN_READ_BUFFER, maxWrite + IN_HEADER_SIZE + WRITE_IN_SIZE, maxWrite + PAGE);
}

/**
 * Start a reader thread for a connection that is about to be served with `opts` (reader-pool.ts
 * prestart): a caller with other work before it can attach (resolving an image) gets the thread's
 * start out of the way meanwhile. `preload`: modules the thread loads meanwhile (the filesystem's
 * ThreadAnswers module). Checks the settings as FuseServer does: a bad one throws here.
 */
export function prestartReaders(opts: FuseServerOptions = {}, preload: string[] = []): void {
  readerPool.prestart(requestBufferSize(opts.maxWrite ?? DEFAULT_MAX_WRITE), readerPolicy(opts), preload);
}

/**
 * Add no reader thread until the returned function is called or `maxMs` passed (reader-pool.ts
 * holdGrowth): taken only while no connection of the process is open, and ended when another one
 * opens. The threads already running go on serving.
 */
export function holdReaderGrowth(maxMs: number): () => void {
  return readerPool.holdGrowth(maxMs);
}

/** End what prestartReaders started if no connection took it (the caller will not attach after all). */
export function cancelPrestartedReaders(): void {
  readerPool.cancelPrestart();
}

/** What INIT settled on, for logs and tests. */
export interface InitInfo {
  major: number;
  minor: number;
  kernelMinor: number;
  /** Flags the kernel offered and the ones we accepted (bits 32+ come from flags2). */
  offered: bigint;
  accepted: bigint;
  maxReadahead: number;
  maxWrite: number;
  maxPages: number;
}

interface InFlight {
  /** Made on first use of the request's signal: most requests never look at it. */
  controller?: AbortController;
  opcode: number;
}

/** An error answer given without throwing (on paths hot enough for a throw's cost to show). */
class ErrnoAnswer {
  constructor(readonly errno: number) {}
}

const NO_DATA = new ErrnoAnswer(Errno.ENODATA);

type Payload = Uint8Array | readonly Uint8Array[] | ErrnoAnswer | undefined;

const PAGE = 4096;

/** Flags a read-only server wants whenever the kernel offers them. */
const WANTED =
  InitFlag.ASYNC_READ |
  InitFlag.BIG_WRITES |
  InitFlag.ASYNC_DIO |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.MAX_PAGES |
  InitFlag.CACHE_SYMLINKS |
  InitFlag.INIT_EXT;

/**
 * Serves one FUSE connection: decodes requests, calls the filesystem, encodes replies. Many requests
 * run at once; a slow one only holds its own reply. Write-type requests answer EROFS.
 */
export class FuseServer {
  readonly ready: Promise<InitInfo>;
  /** Requests the main thread handled, by opcode name (opCounts adds the reader thread's). */
  private readonly mainCounts = new Map<string, number>();
  private channel: FuseChannel | undefined;
  private readonly inflight = new Map<bigint, InFlight>();
  private readonly log: Logger;
  private readonly timeouts: Timeouts;
  private readonly maxWrite: number;
  private readonly policy: ReaderPolicy;
  /** The largest READ asked for at INIT, in pages; read here so a bad setting fails before serving. */
  private readonly maxPages: number;
  private initInfo: InitInfo | undefined;
  /**
   * Int32 [0] / [1]: 1 once the kernel is known to take ENOSYS to OPEN / OPENDIR as "no opens"
   * (SyncFilesystem.zeroMessageOpen).
   */
  private readonly noOpen = new Int32Array(new SharedArrayBuffer(8));
  private resolveReady!: (info: InitInfo) => void;
  private rejectReady!: (err: Error) => void;

  constructor(
    private readonly fs: FuseFilesystem,
    private readonly opts: FuseServerOptions = {},
  ) {
    this.log = opts.logger ?? silentLogger;
    this.timeouts = { entry: opts.entryTimeout ?? 1, attr: opts.attrTimeout ?? 1 };
    this.maxWrite = opts.maxWrite ?? DEFAULT_MAX_WRITE;
    this.policy = readerPolicy(opts);
    this.maxPages = Math.max(1, Math.min(opts.maxPages ?? defaultMaxPages(), 0xffff));
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  }

  /**
   * Start serving an open, mounted /dev/fuse. Resolves when the connection has ended.
   *
   * With `resume`, the connection was set up (INIT answered) by an earlier server that died or was
   * replaced: this one takes over with what INIT settled then, and asks the kernel to send again
   * every request the earlier one read but never answered (FUSE_NOTIFY_RESEND, protocol 7.40+).
   */
  async serve(fd: number, opts: { resume?: InitInfo } = {}): Promise<{ code: string; message: string }> {
    const bufferSize = requestBufferSize(this.maxWrite);
    const answers = this.fs.threadAnswers;
    const channel = new FuseChannel(fd, bufferSize, (req) => this.handle(req), this.log, answers ? {
      answers,
      options: { timeouts: this.timeouts, negativeTimeout: this.opts.negativeTimeout ?? 0, cacheDir: this.opts.cacheDir ?? false, noOpen: this.noOpen },
    } : undefined, this.policy);
    this.channel = channel;
    if (opts.resume) this.resume(channel, opts.resume);
    const stopped = await channel.stopped;
    // An operation that looks at its signal later must still see it aborted.
    for (const f of this.inflight.values()) (f.controller ??= new AbortController()).abort(new Error('FUSE connection ended'));
    this.inflight.clear();
    this.rejectReady(new Error(`FUSE connection ended before INIT: ${stopped.code} ${stopped.message}`));
    if (stopped.code !== 'ENODEV') this.log.warn(stopped, 'fuse: reading /dev/fuse failed');
    return stopped;
  }

  /** How the takeover's resend went: 'sent', or why not (for logs, status and tests). */
  resendResult: 'sent' | 'unsupported' | 'failed' | undefined;

  private resume(channel: FuseChannel, init: InitInfo): void {
    this.initInfo = init;
    this.noteNoOpen(init.offered);
    this.resolveReady(init);
    if (!(init.offered & InitFlag.HAS_RESEND)) {
      // Requests the earlier server had read are lost to us: the kernel waits on them until the
      // connection is aborted. Say so; the new requests are served.
      this.resendResult = 'unsupported';
      this.log.warn({ kernelMinor: init.kernelMinor }, 'fuse: this kernel cannot resend requests (FUSE_NOTIFY_RESEND needs protocol 7.40); requests the old server had read will hang until the mount is aborted');
      return;
    }
    const errno = channel.notify(NotifyCode.RESEND);
    this.resendResult = errno === 0 ? 'sent' : 'failed';
    if (errno !== 0) this.log.warn({ errno }, 'fuse: FUSE_NOTIFY_RESEND failed');
    else this.log.info('fuse: took over the connection; asked the kernel to resend unanswered requests');
  }

  /** Count of requests by opcode name since start, wherever they were answered. */
  get opCounts(): Map<string, number> {
    const counts = new Map(this.mainCounts);
    const here = this.channel?.answeredHere;
    if (here) {
      for (let op = 0; op < here.length; op++) {
        const n = Atomics.load(here, op);
        if (n > 0) counts.set(opcodeName(op), (counts.get(opcodeName(op)) ?? 0) + n);
      }
    }
    return counts;
  }

  get init(): InitInfo | undefined {
    return this.initInfo;
  }

  /** Requests received but not answered yet. */
  get pending(): number {
    return this.inflight.size;
  }

  /** Reader threads reading the connection now. */
  get readerThreads(): number {
    return this.channel?.readers ?? 0;
  }

  /** Requests the reader threads answered themselves, by opcode name (a part of opCounts). */
  get threadCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    const here = this.channel?.answeredHere;
    for (let op = 0; here && op < here.length; op++) {
      const n = Atomics.load(here, op);
      if (n > 0) counts.set(opcodeName(op), n);
    }
    return counts;
  }

  private handle(req: Buffer): void {
    const h = readInHeader(req);
    const name = opcodeName(h.opcode);
    this.mainCounts.set(name, (this.mainCounts.get(name) ?? 0) + 1);
    switch (h.opcode) {
      case Opcode.INIT:
        this.handleInit(h, req);
        return;
      case Opcode.FORGET:
        this.fs.forget?.(Number(h.nodeid), Number(req.readBigUInt64LE(IN_HEADER_SIZE)));
        return;
      case Opcode.BATCH_FORGET:
        this.handleBatchForget(req);
        return;
      case Opcode.INTERRUPT:
        this.handleInterrupt(req.readBigUInt64LE(IN_HEADER_SIZE));
        return;
      case Opcode.NOTIFY_REPLY:
        return;
    }
    const channel = this.channel!;
    if (!this.initInfo) {
      channel.reply(h.unique, Errno.EIO);
      return;
    }
    if (WRITE_OPCODES.has(h.opcode)) {
      channel.reply(h.unique, Errno.EROFS);
      return;
    }
    const flight: InFlight = { opcode: h.opcode };
    this.inflight.set(h.unique, flight);
    const ctx: RequestContext = {
      uid: h.uid,
      gid: h.gid,
      pid: h.pid,
      get signal(): AbortSignal {
        return (flight.controller ??= new AbortController()).signal;
      },
    };
    let result: Promise<Payload>;
    try {
      result = this.dispatch(h, req, ctx);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (payload) => {
        // Not in flight any more: interrupted, and already answered.
        if (this.inflight.get(h.unique) === flight) {
          this.inflight.delete(h.unique);
          if (payload instanceof ErrnoAnswer) channel.reply(h.unique, payload.errno);
          else channel.reply(h.unique, 0, payload);
        }
        // The reply went out with a synchronous write: the buffer is free again.
        if (h.opcode === Opcode.READ && payload instanceof Uint8Array) this.fs.readDone?.(payload);
      },
      (err: unknown) => {
        if (this.inflight.get(h.unique) !== flight) return;
        this.inflight.delete(h.unique);
        channel.reply(h.unique, this.errnoOf(err, h));
      },
    );
  }

  private errnoOf(err: unknown, h: InHeader): number {
    const errno = toErrno(err);
    if (errno !== undefined) return errno;
    this.log.warn({ err, op: opcodeName(h.opcode), nodeid: h.nodeid.toString() }, 'fuse: operation failed');
    return Errno.EIO;
  }

  private handleInterrupt(target: bigint): void {
    const flight = this.inflight.get(target);
    // Not found: already answered, or (several reader threads) not seen yet: then it runs to its end.
    if (!flight) return;
    this.inflight.delete(target);
    (flight.controller ??= new AbortController()).abort(new Error('interrupted'));
    this.channel!.reply(target, Errno.EINTR);
  }

  private handleBatchForget(req: Buffer): void {
    const count = req.readUInt32LE(IN_HEADER_SIZE);
    for (let i = 0, off = IN_HEADER_SIZE + 8; i < count && off + 16 <= req.length; i++, off += 16) {
      this.fs.forget?.(Number(req.readBigUInt64LE(off)), Number(req.readBigUInt64LE(off + 8)));
    }
  }

  private handleInit(h: InHeader, req: Buffer): void {
    const channel = this.channel!;
    const major = req.readUInt32LE(IN_HEADER_SIZE);
    const kernelMinor = req.readUInt32LE(IN_HEADER_SIZE + 4);
    if (major !== FUSE_KERNEL_VERSION) {
      // A newer major: answer with ours and the kernel retries or gives up; an older one we cannot serve.
      this.log.error({ major, kernelMinor }, 'fuse: unsupported kernel protocol major version');
      channel.reply(h.unique, Errno.EPROTO);
      return;
    }
    const maxReadahead = req.readUInt32LE(IN_HEADER_SIZE + 8);
    let offered = BigInt(req.readUInt32LE(IN_HEADER_SIZE + 12));
    if (offered & InitFlag.INIT_EXT && req.length >= IN_HEADER_SIZE + 20) {
      offered |= BigInt(req.readUInt32LE(IN_HEADER_SIZE + 16)) << 32n;
    }
    let wanted = WANTED;
    if (this.fs.readdirplus) wanted |= InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO;
    if (this.opts.posixAcl && this.fs.getxattr) wanted |= InitFlag.POSIX_ACL;
    const accepted = offered & wanted;
    const minor = Math.min(kernelMinor, FUSE_KERNEL_MINOR_VERSION);
    const maxPages = this.maxPages;
    const maxBackground = Math.min(this.opts.maxBackground ?? 128, 0xffff);
    const congestion = Math.min(this.opts.congestionThreshold ?? Math.floor((maxBackground * 3) / 4), 0xffff);

    const out = Buffer.alloc(INIT_OUT_SIZE);
    out.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    out.writeUInt32LE(minor, 4);
    out.writeUInt32LE(maxReadahead, 8);
    out.writeUInt32LE(Number(accepted & 0xffffffffn), 12);
    out.writeUInt16LE(maxBackground, 16);
    out.writeUInt16LE(congestion, 18);
    out.writeUInt32LE(this.maxWrite, 20);
    out.writeUInt32LE(1, 24); // time_gran: nanosecond timestamps
    out.writeUInt16LE(maxPages, 28);
    out.writeUInt16LE(0, 30); // map_alignment
    out.writeUInt32LE(Number(accepted >> 32n), 32); // flags2
    // max_stack_depth, request_timeout, unused: zero.
    // Kernels before 7.23 expect the 24-byte reply.
    channel.reply(h.unique, 0, minor < 23 ? out.subarray(0, 24) : out);

    this.initInfo = { major, minor, kernelMinor, offered, accepted, maxReadahead, maxWrite: this.maxWrite, maxPages };
    this.noteNoOpen(offered);
    this.log.debug({ ...this.initInfo, offered: offered.toString(16), accepted: accepted.toString(16) }, 'fuse: INIT');
    this.resolveReady(this.initInfo);
  }

  private noteNoOpen(offered: bigint): void {
    if (offered & InitFlag.NO_OPEN_SUPPORT) Atomics.store(this.noOpen, 0, 1);
    if (offered & InitFlag.NO_OPENDIR_SUPPORT) Atomics.store(this.noOpen, 1, 1);
  }

  private async dispatch(h: InHeader, req: Buffer, ctx: RequestContext): Promise<Payload> {
    const fs = this.fs;
    const ino = Number(h.nodeid);
    const body = IN_HEADER_SIZE;
    const end = req.length - h.extlen;
    switch (h.opcode) {
      case Opcode.LOOKUP: {
        const entry = await fs.lookup(ino, readCString(req, body, end).value, ctx);
        if (entry) return entryOut(entry, this.timeouts);
        const negative = this.opts.negativeTimeout ?? 0;
        if (negative > 0) return negativeEntryOut(negative);
        throw new FuseErrno('ENOENT');
      }
      case Opcode.GETATTR:
        return attrOut(await fs.getattr(ino, ctx), this.timeouts.attr);
      case Opcode.READLINK: {
        if (!fs.readlink) throw new FuseErrno('ENOSYS');
        const target = await fs.readlink(ino, ctx);
        return typeof target === 'string' ? Buffer.from(target) : target;
      }
      case Opcode.OPEN: {
        const flags = req.readUInt32LE(body);
        const result = fs.open ? await fs.open(ino, flags, ctx) : undefined;
        return openOut(result ?? {}, this.opts.keepCache ?? false, false);
      }
      case Opcode.OPENDIR: {
        const flags = req.readUInt32LE(body);
        const result = fs.opendir ? await fs.opendir(ino, flags, ctx) : undefined;
        return openOut(result ?? {}, false, this.opts.cacheDir ?? false);
      }
      case Opcode.READ: {
        const fh = Number(req.readBigUInt64LE(body));
        const offset = Number(req.readBigUInt64LE(body + 8));
        const size = req.readUInt32LE(body + 16);
        const data = await fs.read(ino, fh, offset, size, ctx);
        return data.length > size ? data.subarray(0, size) : data;
      }
      case Opcode.READDIR:
      case Opcode.READDIRPLUS: {
        const dirReq = {
          fh: Number(req.readBigUInt64LE(body)),
          offset: Number(req.readBigUInt64LE(body + 8)),
          size: req.readUInt32LE(body + 16),
        };
        if (h.opcode === Opcode.READDIR) return packDirents(await fs.readdir(ino, dirReq, ctx), dirReq.size);
        if (!fs.readdirplus) throw new FuseErrno('ENOSYS');
        return packDirentsPlus(await fs.readdirplus(ino, dirReq, ctx), dirReq.size, this.timeouts);
      }
      case Opcode.RELEASE:
        await fs.release?.(ino, Number(req.readBigUInt64LE(body)));
        return undefined;
      case Opcode.RELEASEDIR:
        await fs.releasedir?.(ino, Number(req.readBigUInt64LE(body)));
        return undefined;
      case Opcode.FLUSH:
        await fs.flush?.(ino, Number(req.readBigUInt64LE(body)), ctx);
        return undefined;
      case Opcode.FSYNC:
      case Opcode.FSYNCDIR:
      case Opcode.SYNCFS:
        return undefined; // nothing is ever dirty
      case Opcode.STATFS:
        return statfsOut(fs.statfs ? await fs.statfs(ino, ctx) : EMPTY_STATFS);
      case Opcode.GETXATTR: {
        if (!fs.getxattr) throw new FuseErrno('ENOSYS');
        const size = req.readUInt32LE(body);
        const name = readCString(req, body + 8, end).value.toString();
        const value = await fs.getxattr(ino, name, ctx);
        // No such attribute, the common answer (`ls -l` asks for ACLs and labels): no exception.
        if (value === null) return NO_DATA;
        return sizedReply(value, size);
      }
      case Opcode.LISTXATTR: {
        if (!fs.listxattr) throw new FuseErrno('ENOSYS');
        const size = req.readUInt32LE(body);
        const names = await fs.listxattr(ino, ctx);
        return sizedReply(Buffer.concat(names.map((n) => Buffer.from(`${n}\0`))), size);
      }
      case Opcode.ACCESS:
        if (!fs.access) throw new FuseErrno('ENOSYS');
        await fs.access(ino, req.readUInt32LE(body), ctx);
        return undefined;
      case Opcode.LSEEK: {
        if (!fs.lseek) throw new FuseErrno('ENOSYS');
        const fh = Number(req.readBigUInt64LE(body));
        const offset = Number(req.readBigUInt64LE(body + 8));
        const whence = req.readUInt32LE(body + 16);
        const out = Buffer.allocUnsafe(8);
        out.writeBigUInt64LE(BigInt(await fs.lseek(ino, fh, offset, whence, ctx)));
        return out;
      }
      case Opcode.IOCTL:
        throw new FuseErrno('ENOTTY'); // no ioctl is served: "not a terminal" is what isatty() wants
      case Opcode.DESTROY:
        await this.fs.destroy?.();
        return undefined;
      default:
        throw new FuseErrno('ENOSYS');
    }
  }
}

const EMPTY_STATFS: StatFs = { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: PAGE, namelen: 255, frsize: PAGE };

function openOut(result: OpenResult, keepCacheDefault: boolean, cacheDirDefault: boolean): Buffer {
  const out = Buffer.alloc(OPEN_OUT_SIZE);
  out.writeBigUInt64LE(BigInt(result.fh ?? 0), 0);
  let flags = 0;
  if (result.keepCache ?? keepCacheDefault) flags |= OpenFlag.KEEP_CACHE;
  if (result.directIo) flags |= OpenFlag.DIRECT_IO;
  if (result.cacheDir ?? cacheDirDefault) flags |= OpenFlag.CACHE_DIR;
  out.writeUInt32LE(flags, 8);
  return out;
}
