import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fsp, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { isFuse, mountsAt } from './mountinfo.js';
import { FuseServer, type FuseServerOptions, type InitInfo } from './server.js';
import type { FuseFilesystem } from './types.js';

export interface MountOptions extends FuseServerOptions {
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
  /** Readahead for the mount's backing device, in KiB. Default: the largest READ (maxPages × 4). */
  readaheadKb?: number;
  /** Extra options for `mount -o`. */
  mountOptions?: string[];
  /** How long to wait for the kernel's INIT after mounting. Default 10 s. */
  initTimeoutMs?: number;
}

export interface UnmountOptions {
  /** How long to wait for the connection to end after a (lazy) unmount before aborting it. Default 5 s. */
  timeoutMs?: number;
}

const FUSECTL = '/sys/fs/fuse/connections';

/** A live FUSE mount served by this process. */
export class Mount {
  /** Settles when the connection has ended (by our unmount or anyone else's) and the device is closed. */
  readonly closed: Promise<void>;
  private unmounting: Promise<void> | undefined;
  private ended = false;

  constructor(
    readonly mountpoint: string,
    readonly server: FuseServer,
    /** The connection number (the mount's device minor). */
    readonly connection: number,
    served: Promise<unknown>,
    fd: number,
    private readonly log: Logger,
  ) {
    this.closed = served.then(() => {
      this.ended = true;
      closeSync(fd);
    });
  }

  /** `umount`, lazily if busy; if the connection still has not ended after the timeout, abort it. */
  unmount(opts: UnmountOptions = {}): Promise<void> {
    this.unmounting ??= this.doUnmount(opts.timeoutMs ?? 5000);
    return this.unmounting;
  }

  private async doUnmount(timeoutMs: number): Promise<void> {
    // The connection may have ended first (server error, abort) and left the mount behind.
    const stillMounted = mountsAt(this.mountpoint).some((m) => m.minor === this.connection);
    if (!stillMounted && this.ended) return;
    const plain = await run('umount', [this.mountpoint]);
    if (plain.code !== 0) {
      this.log.info({ mountpoint: this.mountpoint, stderr: plain.stderr }, 'fuse: umount failed, unmounting lazily');
      const lazy = await run('umount', ['-l', this.mountpoint]);
      if (lazy.code !== 0) this.log.warn({ mountpoint: this.mountpoint, stderr: lazy.stderr }, 'fuse: lazy umount failed');
    }
    if (await settlesWithin(this.closed, timeoutMs)) return;
    this.log.warn({ mountpoint: this.mountpoint, connection: this.connection }, 'fuse: connection still open, aborting it');
    await abortConnection(this.connection);
    if (!(await settlesWithin(this.closed, timeoutMs))) {
      throw new ClipError('ETIMEOUT', `FUSE connection ${this.connection} did not end after abort`, { object: this.mountpoint });
    }
  }
}

/**
 * Mount `fs` on `mountpoint` (root only): open /dev/fuse, let util-linux `mount` attach it (the child
 * gets the device as fd 3), then serve requests until the mount goes away. A stale mount left on the
 * mountpoint by a dead server is cleaned first.
 *
 * The serving process must not spawn a child while it holds files of its own mount open, nor one whose
 * exec resolves through the mount: libuv's spawn blocks this thread until the child has exec'd, and the
 * child's exec (closing the inherited file sends FLUSH; loading the program sends READ) waits for this
 * thread to answer. Unmounting spawns `umount`, so the same holds for unmount().
 */
export async function mount(fs: FuseFilesystem, mountpoint: string, opts: MountOptions = {}): Promise<Mount> {
  const attached = await attach(mountpoint, opts);
  return serveAttached(fs, attached, opts);
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
export async function attach(mountpoint: string, opts: MountOptions = {}): Promise<Attached> {
  const log = opts.logger ?? silentLogger;
  const target = resolve(mountpoint);
  if (process.getuid?.() !== 0) {
    throw new ClipError('EPERM', 'mounting a FUSE filesystem needs root (mounting through fusermount3 is not supported yet)', {
      object: target,
    });
  }
  if (await cleanStaleMount(target, log)) log.info({ mountpoint: target }, 'fuse: cleaned a stale mount');
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
  const maxPages = opts.maxPages ?? 256;
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
 * Serve an attached descriptor until the connection ends. Without `resume`, wait for the kernel's
 * INIT (unmounting again if it does not come); with it, take over a connection an earlier server
 * set up (see FuseServer.serve).
 */
export async function serveAttached(fs: FuseFilesystem, attached: Attached, opts: MountOptions = {}, resume?: InitInfo): Promise<Mount> {
  const log = opts.logger ?? silentLogger;
  const { fd, mountpoint: target } = attached;
  const server = new FuseServer(fs, opts);
  const served = server.serve(fd, resume ? { resume } : {});
  const m = new Mount(target, server, attached.connection, served, fd, log);
  try {
    const timeout = opts.initTimeoutMs ?? 10_000;
    if (!(await settlesWithin(server.ready, timeout))) throw new ClipError('ETIMEOUT', `no FUSE INIT within ${timeout} ms`, { object: target });
    await server.ready;
    // The kernel made the root inode from rootmode (040000: a directory with no permission bits)
    // and refreshes it on its first GETATTR. overlayfs copies its lower root's mode when it is
    // mounted, without asking: an overlay made on a fresh mount would keep mode 0000 at its root
    // and refuse every user without CAP_DAC_OVERRIDE. One stat now gives the root its real mode.
    // Asynchronous (the libuv pool waits while this thread answers the GETATTR) and best-effort:
    // a filesystem that fails or stalls its GETATTR is still mounted, as before.
    await settlesWithin(fsp.stat(target).catch(() => undefined), timeout);
  } catch (err) {
    await m.unmount({ timeoutMs: 2000 }).catch(() => undefined);
    throw err;
  }
  if (!resume) setReadahead(attached.major, attached.connection, opts.readaheadKb ?? (opts.maxPages ?? 256) * 4, log);
  log.info({ mountpoint: target, connection: m.connection, init: server.init?.minor, resumed: resume !== undefined }, 'fuse: serving');
  return m;
}

/** Raise the readahead of the mount's backing device so sequential reads arrive as large READs. */
function setReadahead(major: number, minor: number, kb: number, log: Logger): void {
  if (major < 0 || minor < 0) return;
  const file = `/sys/class/bdi/${major}:${minor}/read_ahead_kb`;
  try {
    writeFileSync(file, String(kb));
  } catch (err) {
    log.warn({ err, file }, 'fuse: could not set readahead');
  }
}

/**
 * If `mountpoint` holds a FUSE mount whose server is gone (statfs fails with ENOTCONN), abort its
 * connection and unmount it. Returns whether something was cleaned. A live mount is an error, and
 * so is one whose server does not answer within `answerMs` (it may be busy: not ours to abort).
 */
export async function cleanStaleMount(mountpoint: string, log: Logger = silentLogger, answerMs = 5000): Promise<boolean> {
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
    if (isFuse(m)) await abortConnection(m.minor).catch((err: unknown) => log.warn({ err }, 'fuse: abort failed'));
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

function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
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
function run(cmd: string, args: string[], fd?: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: fd === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code: code ?? -1, stderr }));
  });
}
