/**
 * The few libc calls the FUSE reader needs and Node lacks (poll, pipe2, fcntl, ioctl), through koffi.
 * Loaded only where they are used: the reader thread, and the channel that wakes it.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { createRequire } from 'node:module';

interface Koffi {
  load(name: string): { func(sig: string): (...args: unknown[]) => number };
  struct(name: string, fields: Record<string, string>): unknown;
  errno(): number;
}

export interface PollFd {
  fd: number;
  events: number;
  revents: number;
}

export interface Libc {
  poll(fds: PollFd[], n: number, timeoutMs: number): number;
  /**
   * read(2) into `buf`: the byte count, or minus the errno. No exception on EAGAIN: the reader
   * meets one after every burst, and Node's readSync would build an Error (with its stack) each time.
   */
  read(fd: number, buf: Buffer): number;
  /** A close-on-exec pipe: [read end, write end]. */
  pipe(): [number, number];
  setNonBlocking(fd: number): void;
  /**
   * A new /dev/fuse descriptor attached to the connection of `fd` (FUSE_DEV_IOC_CLONE): requests
   * read from it are answered on it, so each reader thread can have its own queue.
   */
  cloneFuse(fd: number): number;
  errno(): number;
}

export const POLLIN = 0x1;
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOENT = 2;
export const ENODEV = 19;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
/** _IOR(229, 0, uint32_t) */
const FUSE_DEV_IOC_CLONE = 0x8004e500;

let libc: Libc | undefined;

export function loadLibc(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const c = koffi.load('libc.so.6');
  koffi.struct('pollfd', { fd: 'int', events: 'short', revents: 'short' });
  const poll = c.func('int poll(_Inout_ pollfd *fds, unsigned long nfds, int timeout)');
  const pipe2 = c.func('int pipe2(_Out_ int *fds, int flags)');
  const fcntl = c.func('int fcntl(int fd, int cmd, ...)');
  const read = c.func('long read(int fd, void *buf, unsigned long count)');
  const ioctl = c.func('int ioctl(int fd, unsigned long request, ...)');
  libc = {
    poll: (fds, n, timeoutMs) => poll(fds, n, timeoutMs),
    read: (fd, buf) => {
      const n = Number(read(fd, buf, buf.length));
      return n >= 0 ? n : -koffi.errno();
    },
    pipe: () => {
      const fds = [0, 0];
      if (pipe2(fds, O_CLOEXEC) !== 0) throw new Error(`pipe2 failed (errno ${koffi.errno()})`);
      return [fds[0]!, fds[1]!];
    },
    setNonBlocking: (fd) => {
      const flags = fcntl(fd, F_GETFL);
      if (flags < 0 || fcntl(fd, F_SETFL, 'int', flags | O_NONBLOCK) < 0) throw new Error(`fcntl of fd ${fd} failed (errno ${koffi.errno()})`);
    },
    cloneFuse: (fd) => {
      const clone = openSync('/dev/fuse', constants.O_RDWR);
      if (ioctl(clone, FUSE_DEV_IOC_CLONE, 'uint32_t *', [fd]) !== 0) {
        const errno = koffi.errno();
        closeSync(clone);
        throw new Error(`cloning /dev/fuse descriptor ${fd} failed (errno ${errno})`);
      }
      return clone;
    },
    errno: () => koffi.errno(),
  };
  return libc;
}
