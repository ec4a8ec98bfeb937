/**
 * Copy a file descriptor out of another process (pidfd_open + pidfd_getfd, Linux 5.6+), through
 * koffi since Node has no syscall of its own for it. The node's server takes the /dev/fuse
 * descriptors its holder opened this way: the holder keeps its copies, so a mount outlives the
 * server that answers it.
 */
import { ClipError } from './errors.js';
import { loadKoffi } from './koffi.js';

const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;

interface Libc {
  syscall: (...args: unknown[]) => number | bigint;
  close: (fd: number) => number;
  errno: () => number;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  // Loaded only by the processes that need it.
  const koffi = loadKoffi<{
    load(name: string): { func(sig: string): (...args: unknown[]) => number | bigint };
    errno(): number;
  }>();
  const c = koffi.load('libc.so.6');
  const close = c.func('int close(int)') as (fd: number) => number;
  libc = { syscall: c.func('long syscall(long, ...)'), close, errno: () => koffi.errno() };
  return libc;
}

/** A copy of process `pid`'s descriptor `fd`, as a descriptor of this process (close-on-exec). */
export function takeFd(pid: number, fd: number): number {
  const c = load();
  const pidfd = Number(c.syscall(SYS_PIDFD_OPEN, 'int', pid, 'uint', 0));
  if (pidfd < 0) throw new ClipError('EPERM', `pidfd_open failed (errno ${c.errno()})`, { object: `process ${pid}` });
  try {
    const copy = Number(c.syscall(SYS_PIDFD_GETFD, 'int', pidfd, 'int', fd, 'uint', 0));
    if (copy < 0) throw new ClipError('EPERM', `pidfd_getfd of descriptor ${fd} failed (errno ${c.errno()})`, { object: `process ${pid}` });
    return copy;
  } finally {
    c.close(pidfd);
  }
}
