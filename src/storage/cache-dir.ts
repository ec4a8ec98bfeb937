import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { chmod, lstat, mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { ClipError } from '../util/errors.js';

/** /var/cache/clip for root, $XDG_CACHE_HOME/clip (or ~/.cache/clip) for everyone else. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): string {
  if (uid === 0) return '/var/cache/clip';
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME ?? os.homedir(), '.cache');
  return path.join(base, 'clip');
}

/**
 * Create a directory (and parents) readable by its owner only, then make sure nobody else can
 * change what is in it: whoever can write it, or swap it through a parent, could plant symlinks
 * that make this process (often root) write where they choose.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  // One level at a time, not mkdir's recursive mode: that reports a full disk as ENOENT.
  const missing: string[] = [];
  for (let d = path.resolve(dir); d !== path.dirname(d); d = path.dirname(d)) {
    const exists = await lstat(d).then(() => true, (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fileError(err, d);
    });
    if (exists) break;
    missing.unshift(d);
  }
  for (const d of missing) {
    try {
      await mkdir(d, { mode: 0o700 });
      await chmod(d, 0o700); // mkdir's mode is filtered by the umask
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(err, d);
    }
  }
  await checkPrivateDir(dir);
}

/** A failed file system call as one clear error naming the file ("no space left on device"); others as they are. */
export function fileError(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof ClipError || typeof e?.code !== 'string' || typeof e.errno !== 'number') return err;
  const text = getSystemErrorMap().get(e.errno)?.[1] ?? e.code;
  return new ClipError('EIO', `cannot ${e.syscall ?? 'use'} it: ${text} (${e.code})`, { object: file, cause: err });
}

/** Whether `err` (or what it wraps) is a full disk or an exhausted quota: what should cost caching only. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  return err instanceof Error && err.cause !== undefined && isDiskFull(err.cause);
}

/**
 * As ssh checks its files: `dir` must be owned by this user and writable by nobody else; each of its
 * parents must be owned by this user or root, and be writable by others only with the sticky bit
 * (as /tmp is: then nobody can rename or remove what is not theirs in it).
 */
export async function checkPrivateDir(dir: string): Promise<void> {
  const uid = process.geteuid?.() ?? -1;
  const real = await realpath(dir);
  const own = await lstat(real);
  if (own.uid !== uid) {
    throw new ClipError('EUNSAFE', `is owned by uid ${own.uid}, not by this user (uid ${uid}); it must be private to the user running clip`, { object: dir });
  }
  if (own.mode & 0o022) {
    throw new ClipError('EUNSAFE', `is writable by others (mode ${modeText(own.mode)}); make it private (chmod go-w)`, { object: dir });
  }
  for (let d = path.dirname(real); ; d = path.dirname(d)) {
    const st = await lstat(d);
    if (st.uid !== uid && st.uid !== 0) {
      throw new ClipError('EUNSAFE', `its parent ${d} is owned by uid ${st.uid}, who could replace it`, { object: dir });
    }
    if (st.mode & 0o022 && !(st.mode & 0o1000)) {
      throw new ClipError('EUNSAFE', `its parent ${d} is writable by others (mode ${modeText(st.mode)}), who could replace it`, { object: dir });
    }
    if (d === path.dirname(d)) break;
  }
}

function modeText(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

const CREATE_PRIVATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** A new file that did not exist before (never a planted link), 0600, at a unique name beside `file`. */
export function createPrivateFileSync(file: string): { path: string; fd: number } {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    return { path: tmp, fd: openSync(tmp, CREATE_PRIVATE, 0o600) };
  } catch (err) {
    throw fileError(err, tmp);
  }
}

/**
 * Open `file` to append to it (a log), creating it private; a link planted there is removed, never
 * followed, and anything but a regular file is refused.
 */
export function openPrivateLogSync(file: string): number {
  for (;;) {
    try {
      const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      if (!fstatSync(fd).isFile()) {
        closeSync(fd);
        throw new ClipError('EINVAL', 'is not a regular file', { object: file });
      }
      return fd;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOOP') throw err instanceof ClipError ? err : fileError(err, file);
      rmSync(file, { force: true });
    }
  }
}

/**
 * Write `data` as `file`, whole or not at all: a private temporary file renamed over it (rename
 * replaces a link planted at `file` rather than following it).
 */
export async function writePrivateFile(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, CREATE_PRIVATE, 0o600).catch((err: unknown) => {
    throw fileError(err, tmp);
  });
  try {
    await fh.writeFile(data);
    await fh.close();
    await rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw fileError(err, file);
  }
}

/**
 * The same for a file of a few bytes, in system calls on this thread: none of them waits in the
 * libuv pool's queue, where a cold start's inflating and chunk writes made a pid file's five trips
 * take 20–50 ms before a mount could say it is ready (bench/index/RESULTS.md, session 16).
 */
export function writeSmallPrivateFileSync(file: string, data: string): void {
  const { path: tmp, fd } = createPrivateFileSync(file);
  let open = true; // closed once only: a number closed twice may be another thread's file by then
  try {
    const bytes = Buffer.from(data);
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at, at);
    open = false;
    closeSync(fd);
    renameSync(tmp, file);
  } catch (err) {
    if (open) closeSync(fd);
    rmSync(tmp, { force: true });
    throw fileError(err, file);
  }
}

/** Read a small file without following a link planted at its name; undefined when there is none. */
export async function readPrivateFile(file: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}
