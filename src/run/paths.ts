/**
 * Where `clip run` and `clip bundle` keep their state, all under CACHE_DIR/run:
 *   lock                          the flock every change of run state holds (lock.ts)
 *   reaper.lock                   held by the process that stops image mounts when their linger ends
 *   runc/                         runc's --root: its container state (never the system's /run/runc)
 *   images/<hex>/rootfs           the shared read-only mount of one image (its manifest digest)
 *   images/<hex>/refs/<id>        one per container or bundle using that mount
 *   images/<hex>/refs/linger      the linger: keeps the mount for a while after its last container
 *   containers/<id>/              one container: state.json, config.json, rootfs (the overlay),
 *                                 upper/ and work/ (its writable layer; init/ instead with --read-only),
 *                                 etc/ (hosts, hostname, resolv.conf)
 */
import { join } from 'node:path';
import { ClipError } from '../util/errors.js';

export interface RunPaths {
  root: string;
  lock: string;
  /** The linger reaper's lock (one reaper a node). */
  reaper: string;
  runcRoot: string;
  images: string;
  containers: string;
}

export function runPaths(cacheDir: string): RunPaths {
  const root = join(cacheDir, 'run');
  return { root, lock: join(root, 'lock'), reaper: join(root, 'reaper.lock'), runcRoot: join(root, 'runc'), images: join(root, 'images'), containers: join(root, 'containers') };
}

/** "sha256:abc…" as a directory name. */
export function digestDirName(digest: string): string {
  const m = /^([a-z0-9]+):([a-f0-9]{32,128})$/.exec(digest);
  if (!m) throw new ClipError('EINVAL', 'not a digest', { object: digest });
  return m[1] === 'sha256' ? m[2]! : `${m[1]}-${m[2]}`;
}

/** The reference name of an image mount's linger (container ids are `clip-…`, never this). */
export const LINGER_HOLDER = 'linger';

export interface ImageMountPaths {
  dir: string;
  mountpoint: string;
  refs: string;
  /** The linger's reference (refs/linger). */
  linger: string;
}

export function imageMountPaths(cacheDir: string, manifestDigest: string): ImageMountPaths {
  const dir = join(runPaths(cacheDir).images, digestDirName(manifestDigest));
  return { dir, mountpoint: join(dir, 'rootfs'), refs: join(dir, 'refs'), linger: join(dir, 'refs', LINGER_HOLDER) };
}

export interface ContainerPaths {
  dir: string;
  state: string;
  config: string;
  rootfs: string;
  upper: string;
  work: string;
  etc: string;
  /** The init layer of a read-only container. */
  init: string;
}

export function containerPaths(cacheDir: string, id: string): ContainerPaths {
  const dir = join(runPaths(cacheDir).containers, id);
  return {
    dir, state: join(dir, 'state.json'), config: join(dir, 'config.json'), rootfs: join(dir, 'rootfs'),
    upper: join(dir, 'upper'), work: join(dir, 'work'), etc: join(dir, 'etc'), init: join(dir, 'init'),
  };
}

/** Container ids are ours: "clip-" and 12 hex digits. Anything else in the state directories is not touched. */
export const CONTAINER_ID = /^clip-[0-9a-f]{12}$/;

/**
 * overlayfs takes its directories in one comma and colon separated option string: a cache
 * directory whose path holds one of those (or a backslash, its escape) cannot be named there.
 */
export function checkOverlayPath(path: string): void {
  if (/[,:\\\n]/.test(path)) {
    throw new ClipError('EINVAL', 'an overlay cannot use a directory whose path holds a comma, colon, backslash or newline; choose another --cache-dir', { object: path });
  }
}
