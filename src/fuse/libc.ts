/**
 * The few libc calls the FUSE reader needs and Node lacks (epoll, pipe2, fcntl, read, fadvise, tgkill), through koffi.
 * Loaded only where they are used: the reader thread, and the channel that wakes it.
 */
import { loadKoffi } from '../util/koffi.js';

type Func = ((...args: unknown[]) => number) & { async(...args: unknown[]): void };

interface Koffi {
  load(name: string): { func(sig: string): Func };
  struct(name: string, fields: Record<string, string>): unknown;
  errno(): number;
}

export interface Libc {
  /**
   * read(2) into `buf`: the byte count, or minus the errno. No exception on EAGAIN: the reader
   * meets one after every burst, and Node's readSync would build an Error (with its stack) each time.
   */
  read(fd: number, buf: Buffer): number;
  /** A close-on-exec pipe: [read end, write end]. */
  pipe(): [number, number];
  setNonBlocking(fd: number): void;
  /** Clear O_NONBLOCK on `fd`'s open file description (every descriptor sharing it reads blocking). */
  setBlocking(fd: number): void;
  /**
   * close(2), for descriptors a worker thread made through libc: Node's closeSync there warns
   * ("closed but not opened in unmanaged mode") about descriptors it did not open itself.
   */
  close(fd: number): void;
  /** F_SETPIPE_SZ: the pipe's new size, or -1. */
  setPipeSize(fd: number, size: number): number;
  /** splice(2) up to `len` bytes of file `fdIn` at `position` into pipe `pipeOut`: the count, or minus the errno. */
  spliceIn(fdIn: number, position: number, pipeOut: number, len: number): number;
  /** splice(2) `len` bytes from pipe `pipeIn` into `fdOut`: the count, or minus the errno. */
  spliceOut(pipeIn: number, fdOut: number, len: number): number;
  /** A close-on-exec epoll instance. */
  epollCreate(): number;
  /**
   * Watch `fd` for input on epoll `ep`; `exclusive` (EPOLLEXCLUSIVE): when several epoll instances
   * watch the same file, an event wakes one that is waiting, not all of them.
   */
  epollAdd(ep: number, fd: number, exclusive: boolean): void;
  epollDel(ep: number, fd: number): void;
  /** Wait until a watched file is ready or `timeoutMs` passes (-1: no limit): how many are ready (see readyFd). */
  epollWait(ep: number, timeoutMs: number): number;
  /** The descriptor of the `i`-th ready file of the last epollWait (of this thread). */
  readyFd(i: number): number;
  /** epollWait on a thread of libuv's pool, for the main thread (it must not block). */
  epollWaitAsync(ep: number, timeoutMs: number): Promise<number>;
  /**
   * Ask the scheduler for slices of `ns` for the calling thread (sched_setattr's sched_runtime for
   * SCHED_OTHER, Linux 6.12+; kept between 0.1 and 100 ms), its policy and nice value unchanged:
   * the slice it now has (0 where an older kernel ignored it), or minus the errno (ENOSYS, EINVAL).
   */
  setSlice(ns: number): number;
  /**
   * posix_fadvise(POSIX_FADV_WILLNEED): start reading `len` bytes of `fd` at `offset` into the page
   * cache without waiting for them; 0, or the errno (advice only: callers may ignore it).
   */
  willNeed(fd: number, offset: number, len: number): number;
  /** The calling thread's id (gettid(2)): its /proc/self/task entry. */
  gettid(): number;
  /** tgkill(2): send `signal` to thread `tid` of this process; 0, or minus the errno. */
  signalThread(tid: number, signal: number): number;
  errno(): number;
}

export const EINTR = 4;
export const EAGAIN = 11;
export const ENOENT = 2;
export const ENODEV = 19;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const F_SETPIPE_SZ = 1031;
const SPLICE_F_MOVE = 1;
const POSIX_FADV_WILLNEED = 3;
const SPLICE_F_NONBLOCK = 2;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLLIN = 0x1;
const EPOLLEXCLUSIVE = 1 << 28;
/** struct epoll_event: packed (12 bytes) on x86-64, 16 bytes elsewhere; its data (we store the fd) after the events word. */
const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const EPOLL_DATA_AT = process.arch === 'x64' ? 4 : 8;
const EPOLL_EVENTS = 16;
/** sched_getattr / sched_setattr system call numbers (no glibc wrappers). */
const SYS_SCHED = process.arch === 'x64' ? { set: 314, get: 315 } : process.arch === 'arm64' ? { set: 274, get: 275 } : undefined;
const SYS_GETTID = process.arch === 'x64' ? 186 : process.arch === 'arm64' ? 178 : -1;
const SYS_TGKILL = process.arch === 'x64' ? 234 : process.arch === 'arm64' ? 131 : -1;
/** struct sched_attr up to sched_period (SCHED_ATTR_SIZE_VER0); sched_runtime is at byte 24. */
const SCHED_ATTR_SIZE = 48;
const ENOSYS = 38;
const EINVAL = 22;

let libc: Libc | undefined;

export function loadLibc(): Libc {
  if (libc) return libc;
  const koffi = loadKoffi<Koffi>();
  const c = koffi.load('libc.so.6');
  const pipe2 = c.func('int pipe2(_Out_ int *fds, int flags)');
  const fcntl = c.func('int fcntl(int fd, int cmd, ...)');
  const read = c.func('long read(int fd, void *buf, unsigned long count)');
  const splice = c.func('long splice(int fd_in, void *off_in, int fd_out, void *off_out, unsigned long len, unsigned int flags)');
  const position = Buffer.alloc(8);
  const close = c.func('int close(int fd)');
  const epollCreate1 = c.func('int epoll_create1(int flags)');
  const epollCtl = c.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
  const epollWait = c.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
  const syscall = c.func('long syscall(long number, ...)');
  const fadvise = c.func('int posix_fadvise(int fd, long offset, long len, int advice)');
  const event = Buffer.alloc(16);
  const events = Buffer.alloc(EPOLL_EVENT_SIZE * EPOLL_EVENTS);
  /** O_NONBLOCK on or off, the other status flags kept. */
  const setNonBlock = (fd: number, on: boolean): void => {
    const flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, 'int', on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) < 0) throw new Error(`fcntl of fd ${fd} failed (errno ${koffi.errno()})`);
  };
  /** For epollWaitAsync: one wait at a time (the reader pool's, while no thread runs). */
  const asyncEvents = Buffer.alloc(EPOLL_EVENT_SIZE * EPOLL_EVENTS);
  libc = {
    read: (fd, buf) => {
      const n = Number(read(fd, buf, buf.length));
      return n >= 0 ? n : -koffi.errno();
    },
    pipe: () => {
      const fds = [0, 0];
      if (pipe2(fds, O_CLOEXEC) !== 0) throw new Error(`pipe2 failed (errno ${koffi.errno()})`);
      return [fds[0]!, fds[1]!];
    },
    setNonBlocking: (fd) => setNonBlock(fd, true),
    setBlocking: (fd) => setNonBlock(fd, false),
    close: (fd) => void close(fd),
    setPipeSize: (fd, size) => fcntl(fd, F_SETPIPE_SZ, 'int', size),
    spliceIn: (fdIn, at, pipeOut, len) => {
      position.writeBigInt64LE(BigInt(at));
      const n = Number(splice(fdIn, position, pipeOut, null, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
      return n >= 0 ? n : -koffi.errno();
    },
    spliceOut: (pipeIn, fdOut, len) => {
      const n = Number(splice(pipeIn, null, fdOut, null, len, SPLICE_F_MOVE));
      return n >= 0 ? n : -koffi.errno();
    },
    epollCreate: () => {
      const ep = epollCreate1(O_CLOEXEC);
      if (ep < 0) throw new Error(`epoll_create1 failed (errno ${koffi.errno()})`);
      return ep;
    },
    epollAdd: (ep, fd, exclusive) => {
      event.fill(0);
      event.writeUInt32LE((EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0)) >>> 0, 0);
      event.writeInt32LE(fd, EPOLL_DATA_AT);
      if (epollCtl(ep, EPOLL_CTL_ADD, fd, event) !== 0) throw new Error(`epoll_ctl ADD of fd ${fd} failed (errno ${koffi.errno()})`);
    },
    epollDel: (ep, fd) => {
      epollCtl(ep, EPOLL_CTL_DEL, fd, event); // ENOENT/EBADF: not watched any more
    },
    epollWait: (ep, timeoutMs) => epollWait(ep, events, EPOLL_EVENTS, timeoutMs),
    readyFd: (i) => events.readInt32LE(i * EPOLL_EVENT_SIZE + EPOLL_DATA_AT),
    // The events go to memory of their own that lives as long as the process: the call runs on
    // another thread while JavaScript goes on, and a buffer collected meanwhile (a local one was)
    // had the kernel write into freed memory (glibc aborted: "corrupted double-linked list").
    epollWaitAsync: (ep, timeoutMs) => new Promise((resolve, reject) => {
      epollWait.async(ep, asyncEvents, EPOLL_EVENTS, timeoutMs, (err: unknown, n: number) => (err ? reject(err as Error) : resolve(n)));
    }),
    setSlice: (ns) => {
      if (!SYS_SCHED) return -ENOSYS;
      // Read the thread's attributes first: sched_setattr sets the nice value too, and a server
      // started under `nice` must keep it.
      const attr = Buffer.alloc(SCHED_ATTR_SIZE);
      if (Number(syscall(SYS_SCHED.get, 'int', 0, 'void *', attr, 'unsigned int', SCHED_ATTR_SIZE, 'unsigned int', 0)) !== 0) return -koffi.errno();
      if (attr.readUInt32LE(4) !== 0) return -EINVAL; // not SCHED_OTHER: leave it
      attr.writeUInt32LE(SCHED_ATTR_SIZE, 0);
      attr.writeBigUInt64LE(0n, 8); // flags
      attr.writeBigUInt64LE(BigInt(ns), 24);
      if (Number(syscall(SYS_SCHED.set, 'int', 0, 'void *', attr, 'unsigned int', 0)) !== 0) return -koffi.errno();
      if (Number(syscall(SYS_SCHED.get, 'int', 0, 'void *', attr, 'unsigned int', SCHED_ATTR_SIZE, 'unsigned int', 0)) !== 0) return -koffi.errno();
      return Number(attr.readBigUInt64LE(24));
    },
    willNeed: (fd, offset, len) => fadvise(fd, offset, len, POSIX_FADV_WILLNEED),
    gettid: () => Number(syscall(SYS_GETTID)),
    signalThread: (tid, signal) => {
      if (SYS_TGKILL < 0) return -ENOSYS;
      return Number(syscall(SYS_TGKILL, 'int', process.pid, 'int', tid, 'int', signal)) === 0 ? 0 : -koffi.errno();
    },
    errno: () => koffi.errno(),
  };
  return libc;
}
