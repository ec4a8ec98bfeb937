/**
 * Attaching /dev/fuse to a mountpoint, and cleaning up after dead servers: what the holder
 * (src/server/holder.ts) needs, kept apart from the server so that it imports little.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fsp } from 'node:fs';
import { resolve } from 'node:path';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { isFuse, mountsAt } from './mountinfo.js';
import { defaultMaxPages } from './read-size.js';

const FUSECTL = '/sys/fs/fuse/connections';

/** How /dev/fuse is mounted. */
export interface AttachOptions {
  logger?: Logger;
  /** The mount's source as `mount` and /proc/mounts show it. Default "fuse". */
  fsname?: string;
  /** The type is fuse.<subtype>. Default: the fsname. */
  subtype?: string;
  /** Let users other than root see the mount. Default true. */
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits (so the filesystem need not). Default true. */
  defaultPermissions?: boolean;
  /**
   * Honour setuid/setgid bits and file capabilities of programs run from the mount. Default false
   * (nosuid): with allow_other, a setuid-root file in the served tree would make anyone root. An
   * overlay with this mount as a lower layer has mount flags of its own and still honours them.
   */
  suid?: boolean;
  /** Let device nodes on the mount be opened. Default false (nodev), for the same reason. */
  dev?: boolean;
  /** Mount read-only. Default true. */
  readOnly?: boolean;
  /** Largest READ the kernel sends, in pages of 4 KiB. Default 256 (1 MiB), or what a splice can carry (read-size.ts). */
  maxPages?: number;
  /** Extra options for `mount -o`. */
  mountOptions?: string[];
}

/** A /dev/fuse descriptor mounted on a mountpoint, not served yet. */
export interface Attached {
  fd: number;
  mountpoint: string;
  /** The connection number (the mount's device minor), and the device major. */
  connection: number;
  major: number;
}

/**
 * Open /dev/fuse and mount it on `mountpoint` (root only) with util-linux `mount` (the child gets
 * the device as its fd 3). Nothing answers it yet: the kernel's INIT waits for a server. A stale
 * mount left on the mountpoint by a dead server is cleaned first.
 */
export async function attach(mountpoint: string, opts: AttachOptions = {}): Promise<Attached> {
  const log = opts.logger;
  const target = resolve(mountpoint);
  if (process.getuid?.() !== 0) {
    throw new ClipError('EPERM', 'mounting a FUSE filesystem needs root (mounting through fusermount3 is not supported yet)', {
      object: target,
    });
  }
  if (await cleanStaleMount(target, log)) log?.info({ mountpoint: target }, 'fuse: cleaned a stale mount');
  let st;
  try {
    st = await fsp.stat(target);
  } catch (err) {
    throw new ClipError('ENOTFOUND', 'mountpoint does not exist', { object: target, cause: err });
  }
  if (!st.isDirectory()) throw new ClipError('EINVAL', 'mountpoint is not a directory', { object: target });

  const fd = openSync('/dev/fuse', 'r+');
  const fsname = opts.fsname ?? 'fuse';
  const subtype = opts.subtype ?? fsname;
  const maxPages = opts.maxPages ?? defaultMaxPages();
  const options = [
    'fd=3',
    'rootmode=40000',
    'user_id=0',
    'group_id=0',
    ...(opts.allowOther === false ? [] : ['allow_other']),
    ...(opts.defaultPermissions === false ? [] : ['default_permissions']),
    ...(opts.readOnly === false ? [] : ['ro']),
    ...(opts.suid ? [] : ['nosuid']),
    ...(opts.dev ? [] : ['nodev']),
    `max_read=${maxPages * 4096}`,
    ...(opts.mountOptions ?? []),
  ];
  const mounted = await run('mount', ['-i', '-t', `fuse.${subtype}`, '-o', options.join(','), fsname, target], fd);
  if (mounted.code !== 0) {
    closeSync(fd);
    throw new ClipError('EPERM', `mount failed: ${mounted.stderr.trim() || `exit code ${mounted.code}`}`, { object: target });
  }
  const info = mountsAt(target).at(-1);
  return { fd, mountpoint: target, connection: info?.minor ?? -1, major: info?.major ?? -1 };
}

/**
 * If `mountpoint` holds a FUSE mount whose server is gone (statfs fails with ENOTCONN), abort its
 * connection and unmount it. Returns whether something was cleaned. A live mount is an error, and
 * so is one whose server does not answer within `answerMs` (it may be busy: not ours to abort).
 */
export async function cleanStaleMount(mountpoint: string, log?: Logger, answerMs = 5000): Promise<boolean> {
  const target = resolve(mountpoint);
  let stale = false;
  try {
    // statfs, not stat: the kernel answers stat from cached attributes even after the server died,
    // while STATFS always goes to the server and fails with ENOTCONN once the connection is gone.
    const answered = fsp.statfs(target);
    if (!(await settlesWithin(answered, answerMs))) {
      answered.catch(() => undefined);
      throw new ClipError('ETIMEOUT', `the filesystem mounted here does not answer within ${answerMs} ms; unmount it first (clip unmount, or umount -l)`, { object: target });
    }
    await answered;
  } catch (err) {
    if (err instanceof ClipError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') return false;
    stale = true;
  }
  const mounts = mountsAt(target);
  if (!stale) {
    if (mounts.some(isFuse)) {
      throw new ClipError('EINVAL', 'a FUSE filesystem is already mounted here; unmount it first', { object: target });
    }
    return false;
  }
  for (const m of mounts.reverse()) {
    if (isFuse(m)) await abortConnection(m.minor).catch((err: unknown) => log?.warn({ err }, 'fuse: abort failed'));
    const plain = await run('umount', [target]);
    if (plain.code !== 0) {
      const lazy = await run('umount', ['-l', target]);
      if (lazy.code !== 0) {
        throw new ClipError('EPERM', `cannot unmount stale mount: ${lazy.stderr.trim()}`, { object: target });
      }
    }
  }
  return true;
}

/** Abort FUSE connection `n` through fusectl (mounting fusectl first if nobody has). */
export async function abortConnection(n: number): Promise<void> {
  if (n < 0) return;
  if (!existsSync(`${FUSECTL}/${n}`) && mountsAt(FUSECTL).length === 0) {
    const r = await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL]);
    if (r.code !== 0) throw new ClipError('EPERM', `cannot mount fusectl: ${r.stderr.trim()}`, { object: FUSECTL });
  }
  const file = `${FUSECTL}/${n}/abort`;
  if (!existsSync(file)) return; // the connection is already gone
  await fsp.writeFile(file, '1');
}

export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolveWithin) => {
    const timer = setTimeout(() => resolveWithin(false), ms);
    const done = (): void => {
      clearTimeout(timer);
      resolveWithin(true);
    };
    p.then(done, done);
  });
}

/** Run a tool; `fd` becomes the child's fd 3. */
export function run(cmd: string, args: string[], fd?: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: fd === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code: code ?? -1, stderr }));
  });
}
