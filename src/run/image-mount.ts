/**
 * The one read-only mount of an image that every container of it on this node shares, at a
 * canonical place: CACHE_DIR/run/images/<manifest digest>/rootfs. Each container or bundle using it
 * holds a reference (a file in refs/ naming its owner: the `clip run` process, by pid and start
 * time, or a bundle); the mount is started by the first and stopped when the last goes. A reference
 * whose owner died (a SIGKILLed `clip run`) counts for nothing, so the next run or sweep stops a
 * mount that a crash left. Mounts start only through startBackground() and stop only through
 * unmountMountpoint(): whatever serves them behind those is not this module's business.
 */
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { isFuse, mountsAt, parseMountInfo } from '../fuse/mountinfo.js';
import { startBackground } from '../server/background.js';
import { unmount as unmountMountpoint } from '../server/unmount.js';
import { processStartTime } from '../mount/files.js';
import type { MountConfig } from '../mount/serve.js';
import { isClipMount } from '../mount/unmount.js';
import { ensurePrivateDir, readPrivateFile, writePrivateFile } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { readFileSync } from 'node:fs';
import { withLock } from './lock.js';
import { imageMountPaths, runPaths } from './paths.js';

/** Who holds a reference: a live process (pid and start time), or a bundle until it is removed. */
export type RefOwner = { pid: number; startTime: string } | { bundle: string };

/** This process as an owner. */
export function selfOwner(): RefOwner {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? '' };
}

/** Whether the owner still lives: a bundle does until removed; a process while its pid names the same process. */
export function ownerAlive(owner: RefOwner | undefined): boolean {
  if (!owner) return false;
  if ('bundle' in owner) return true;
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
}

/** Drop a reference; the last live one stops the mount. Returns whether the mount was stopped. */
export async function releaseImageMount(opts: ReleaseOptions): Promise<boolean> {
  const body = async (): Promise<boolean> => {
    const { refs } = imageMountPaths(opts.cacheDir, opts.manifestDigest);
    await rm(join(refs, opts.holder), { force: true });
    return stopIfUnused(opts.cacheDir, opts.manifestDigest, opts.logger ?? silentLogger);
  };
  return opts.locked ? body() : withLock(runPaths(opts.cacheDir).lock, body);
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
