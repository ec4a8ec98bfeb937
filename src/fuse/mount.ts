import { closeSync, promises as fsp, writeFileSync } from 'node:fs';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { abortConnection, attach, run, settlesWithin, type AttachOptions, type Attached } from './attach.js';
import { mountsAt } from './mountinfo.js';
import { defaultMaxPages } from './read-size.js';
import { FuseServer, type FuseServerOptions, type InitInfo } from './server.js';
import type { FuseFilesystem } from './types.js';

export interface MountOptions extends FuseServerOptions, AttachOptions {
  logger?: Logger;
  /** Readahead for the mount's backing device, in KiB. Default: the largest READ (maxPages × 4). */
  readaheadKb?: number;
  /**
   * How long to wait for the kernel's INIT after mounting. Default 60 s: INIT is read by the first
   * reader thread, whose start took over 10 s on a loaded machine (load 17 on 2 cores, from .ts).
   */
  initTimeoutMs?: number;
}

export interface UnmountOptions {
  /** How long to wait for the connection to end after a (lazy) unmount before aborting it. Default 5 s. */
  timeoutMs?: number;
}

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

/**
 * Serve an attached descriptor until the connection ends. Without `resume`, wait for the kernel's
 * INIT (unmounting again if it does not come); with it, take over a connection an earlier server
 * set up (see FuseServer.serve).
 */
export async function serveAttached(fs: FuseFilesystem, attached: Attached, opts: MountOptions = {}, resume?: InitInfo): Promise<Mount> {
  const log = opts.logger ?? silentLogger;
  const { fd, mountpoint: target } = attached;
  let server: FuseServer;
  try {
    server = new FuseServer(fs, opts); // reads the settings: a bad one throws here, once mounted
  } catch (err) {
    // Nothing serves the connection: a mount left behind would answer ENOTCONN to every user.
    // A resumed connection is the caller's (the node server's resume) to end.
    if (!resume) await detach(attached, log);
    throw err;
  }
  const served = server.serve(fd, resume ? { resume } : {});
  const m = new Mount(target, server, attached.connection, served, fd, log);
  try {
    const timeout = opts.initTimeoutMs ?? 60_000;
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
  if (!resume) setReadahead(attached.major, attached.connection, opts.readaheadKb ?? (opts.maxPages ?? defaultMaxPages()) * 4, log);
  log.info({ mountpoint: target, connection: m.connection, init: server.init?.minor, resumed: resume !== undefined }, 'fuse: serving');
  return m;
}

/**
 * Undo an attach nobody will serve. The connection is aborted first: until INIT is answered the
 * kernel holds every request on the mount, `umount`'s own lookup of the path included.
 */
async function detach({ fd, mountpoint, connection }: Attached, log: Logger): Promise<void> {
  try {
    await abortConnection(connection).catch((err: unknown) => log.warn({ err, connection }, 'fuse: could not abort an unserved connection'));
    if ((await run('umount', [mountpoint])).code !== 0 && (await run('umount', ['-l', mountpoint])).code !== 0) {
      log.warn({ mountpoint, connection }, 'fuse: could not unmount an attach left unserved');
    }
  } catch (err) {
    log.warn({ err, mountpoint }, 'fuse: could not unmount an attach left unserved'); // umount could not be run
  } finally {
    closeSync(fd);
  }
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


