/**
 * The one read-only mount of an image that every container of it on this node shares, at a
 * canonical place: CACHE_DIR/run/images/<manifest digest>/rootfs. Each container or bundle using it
 * holds a reference (a file in refs/ naming its owner: the `clip run` process, by pid and start
 * time, or a bundle); the mount is started by the first and stopped when the last goes. A reference
 * whose owner died (a SIGKILLed `clip run`) counts for nothing, so the next run or sweep stops a
 * mount that a crash left. Mounts start only through startBackground() and stop only through
 * unmountMountpoint(): whatever serves them behind those is not this module's business. Both are
 * loaded when first needed: a warm run that joins a serving mount never needs them (the unmount
 * path alone loads the whole FUSE protocol).
 */
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { isFuse, mountsAt, parseMountInfo } from '../fuse/mountinfo.js';
import { isClipMount, processStartTime } from '../mount/files.js';
import type { MountConfig } from '../mount/serve.js';
import type { UnmountCommandOptions, UnmountResult } from '../mount/unmount.js';
import { ensurePrivateDir, readPrivateFile, writePrivateFile } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { readFileSync } from 'node:fs';
import { ensureReaper } from './linger.js';
import { withLock } from './lock.js';
import { imageMountPaths, runPaths } from './paths.js';

/** The server's unmount, loaded when a mount is to stop. */
async function unmountMountpoint(mountpoint: string, opts: UnmountCommandOptions): Promise<UnmountResult> {
  return (await import('../server/unmount.js')).unmount(mountpoint, opts);
}

/**
 * Who holds a reference: a live process (pid and start time), a bundle until it is removed, or the
 * linger until its time (the mount kept for the next container after the last one ended).
 */
export type RefOwner = { pid: number; startTime: string } | { bundle: string } | { lingerUntil: number };

/** This process as an owner. */
export function selfOwner(): RefOwner {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? '' };
}

/** Whether the owner still lives: a bundle does until removed; a process while its pid names the same process. */
export function ownerAlive(owner: RefOwner | undefined): boolean {
  if (!owner) return false;
  if ('bundle' in owner) return true;
  if ('lingerUntil' in owner) return owner.lingerUntil > Date.now();
  return owner.startTime !== '' && processStartTime(owner.pid) === owner.startTime;
}

export interface AcquireOptions {
  cacheDir: string;
  manifestDigest: string;
  /** The container or bundle taking the reference (a file name). */
  holder: string;
  owner: RefOwner;
  /** How to mount the image when nothing serves it yet (mountpoint and cacheDir are set here). */
  mount: Omit<MountConfig, 'mountpoint' | 'cacheDir'>;
  logger?: Logger;
  /** Taken by the caller already (the lock is not re-entrant). */
  locked?: boolean;
}

export interface AcquiredMount {
  mountpoint: string;
  /** True when this call started the mount; false when it joined a running one. */
  started: boolean;
}

/** Whether a live clip mount serves `mountpoint` (it answers statfs). */
export async function servingMount(mountpoint: string): Promise<boolean> {
  const top = mountsAt(mountpoint).filter(isFuse).at(-1);
  if (!top || !isClipMount(top)) return false;
  return statfs(mountpoint).then(() => true, () => false);
}

/** Take a reference on the image's mount, mounting it if nothing serves it. */
export async function acquireImageMount(opts: AcquireOptions): Promise<AcquiredMount> {
  const log = opts.logger ?? silentLogger;
  const paths = imageMountPaths(opts.cacheDir, opts.manifestDigest);
  const body = async (): Promise<AcquiredMount> => {
    await ensurePrivateDir(paths.refs);
    await mkdir(paths.mountpoint, { recursive: true, mode: 0o755 });
    const ref = join(paths.refs, opts.holder);
    await writePrivateFile(ref, `${JSON.stringify(opts.owner)}\n`);
    try {
      if (await servingMount(paths.mountpoint)) {
        log.debug({ mountpoint: paths.mountpoint, holder: opts.holder, sinceStartMs: Math.round(performance.now()) }, 'run: joining the image mount');
        return { mountpoint: paths.mountpoint, started: false };
      }
      // A mount that does not serve (its server died) is cleaned first.
      if (mountsAt(paths.mountpoint).some(isFuse)) {
        await unmountMountpoint(paths.mountpoint, { cacheDir: opts.cacheDir, logger: log }).catch((err: unknown) => log.warn({ err }, 'run: cleaning a dead image mount failed'));
      }
      const { startBackground } = await import('../server/background.js');
      const bg = await startBackground({ ...opts.mount, mountpoint: paths.mountpoint, cacheDir: opts.cacheDir });
      log.info({ mountpoint: paths.mountpoint, pid: bg.pid, image: opts.mount.image, sinceStartMs: Math.round(performance.now()) }, 'run: image mounted');
      return { mountpoint: paths.mountpoint, started: true };
    } catch (err) {
      await rm(ref, { force: true });
      throw err;
    }
  };
  return opts.locked ? body() : withLock(runPaths(opts.cacheDir).lock, body);
}

/** The holders of live references on the image's mount. */
export async function liveHolders(cacheDir: string, manifestDigest: string): Promise<string[]> {
  const { refs } = imageMountPaths(cacheDir, manifestDigest);
  const names = await readdir(refs).catch(() => [] as string[]);
  const live: string[] = [];
  for (const name of names) {
    if (name.endsWith('.tmp')) continue;
    if (ownerAlive(await readOwner(join(refs, name)))) live.push(name);
  }
  return live;
}

async function readOwner(file: string): Promise<RefOwner | undefined> {
  try {
    return JSON.parse((await readPrivateFile(file)) ?? '') as RefOwner;
  } catch {
    return undefined;
  }
}

export interface ReleaseOptions {
  cacheDir: string;
  manifestDigest: string;
  holder: string;
  logger?: Logger;
  locked?: boolean;
  /**
   * Keep the mount this long (ms) after this reference goes, for the next container of the image
   * (a reference `linger` that lives until then; the node's reaper process stops the mount after it).
   */
  lingerMs?: number;
}

/** Drop a reference; the last live one stops the mount (unless it lingers). Returns whether the mount was stopped. */
export async function releaseImageMount(opts: ReleaseOptions): Promise<boolean> {
  const body = async (): Promise<boolean> => {
    const log = opts.logger ?? silentLogger;
    const paths = imageMountPaths(opts.cacheDir, opts.manifestDigest);
    await rm(join(paths.refs, opts.holder), { force: true });
    if (opts.lingerMs && opts.lingerMs > 0 && mountsAt(paths.mountpoint).some(isFuse)) {
      const owner: RefOwner = { lingerUntil: Date.now() + opts.lingerMs };
      await writePrivateFile(paths.linger, `${JSON.stringify(owner)}\n`);
      await ensureReaper(opts.cacheDir, log);
      log.debug({ mountpoint: paths.mountpoint, lingerMs: opts.lingerMs }, 'run: the image mount lingers');
      return false;
    }
    return stopIfUnused(opts.cacheDir, opts.manifestDigest, log);
  };
  return opts.locked ? body() : withLock(runPaths(opts.cacheDir).lock, body);
}

/** Stop the image's linger: the mount stops now unless a container uses it. Returns whether it was stopped. */
export async function endLinger(cacheDir: string, manifestDigest: string, log: Logger = silentLogger): Promise<boolean> {
  await ensurePrivateDir(runPaths(cacheDir).root);
  return withLock(runPaths(cacheDir).lock, async () => {
    await rm(imageMountPaths(cacheDir, manifestDigest).linger, { force: true });
    return stopIfUnused(cacheDir, manifestDigest, log);
  });
}

/** With no live reference left, stop the mount, drop dead references and remove the image's directory. Call holding the lock. */
export async function stopIfUnused(cacheDir: string, manifestDigest: string, log: Logger): Promise<boolean> {
  const paths = imageMountPaths(cacheDir, manifestDigest);
  if ((await liveHolders(cacheDir, manifestDigest)).length > 0) return false;
  let stopped = false;
  if (mountsAt(paths.mountpoint).some(isFuse)) {
    await unmountMountpoint(paths.mountpoint, { cacheDir, logger: log });
    stopped = true;
    log.info({ mountpoint: paths.mountpoint }, 'run: image unmounted (no container uses it)');
  }
  // Never a recursive removal across a mount: it would walk (and try to delete) the image.
  if (mountedUnder(paths.dir)) throw new ClipError('EIO', 'still mounted after unmounting; not removing it', { object: paths.mountpoint });
  await rm(paths.dir, { recursive: true, force: true });
  return stopped;
}

/** Every image directory there is (by digest), for sweeps. */
export async function imageMountDigests(cacheDir: string): Promise<string[]> {
  const names = await readdir(runPaths(cacheDir).images).catch(() => [] as string[]);
  return names.flatMap((n) => (/^[a-f0-9]{64}$/.test(n) ? [`sha256:${n}`] : /^([a-z0-9]+)-([a-f0-9]{32,128})$/.test(n) ? [n.replace('-', ':')] : []));
}

/** Whether anything is mounted at `dir` or below it. */
export function mountedUnder(dir: string): boolean {
  const prefix = `${dir}/`;
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === dir || m.mountPoint.startsWith(prefix));
}
