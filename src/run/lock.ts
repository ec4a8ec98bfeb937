/**
 * One lock for the run state of a cache directory (image mounts, containers, their records): an
 * flock(2) on CACHE_DIR/run/lock, which the kernel drops when its holder dies, so a SIGKILLed
 * `clip run` never leaves it held. Held only for short steps (start or stop a mount, sweep).
 */
import { closeSync, constants, openSync } from 'node:fs';
import koffi from 'koffi';
import { ClipError } from '../util/errors.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;

let flockFn: ((fd: number, op: number) => number) | undefined;

function flock(fd: number, op: number): number {
  flockFn ??= koffi.load('libc.so.6').func('int flock(int fd, int op)') as (fd: number, op: number) => number;
  return flockFn(fd, op);
}

export interface Lock {
  release(): void;
}

/** Take the lock in `file` (created 0600), waiting up to `timeoutMs` for another holder. */
export async function takeLock(file: string, timeoutMs = 120_000): Promise<Lock> {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new ClipError('EIO', `cannot open the lock file: ${(err as Error).message}`, { object: file, cause: err });
  }
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) === 0) break;
    const errno = koffi.errno();
    if (errno !== EWOULDBLOCK && errno !== EINTR) {
      closeSync(fd);
      throw new ClipError('EIO', `flock failed (errno ${errno})`, { object: file });
    }
    if (Date.now() > until) {
      closeSync(fd);
      throw new ClipError('ETIMEOUT', `another clip process holds this lock for more than ${Math.round(timeoutMs / 1000)} s`, { object: file });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return heldLock(fd);
}

/** The lock in `file` if nobody holds it now, else undefined (never waits). */
export function tryLock(file: string): Lock | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new ClipError('EIO', `cannot open the lock file: ${(err as Error).message}`, { object: file, cause: err });
  }
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    return undefined;
  }
  return heldLock(fd);
}

/** Run `fn` holding the lock. */
export async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = await takeLock(file);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** The lock held on `fd`: released (and the descriptor closed) once, however often asked. */
function heldLock(fd: number): Lock {
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
}
