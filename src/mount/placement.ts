/** Where a mount's cache directory may be: private to the user, and never under the mountpoint. */
import { realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ensurePrivateDir } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';

/**
 * Before any work (indexing included): the mountpoint must be a directory, and the cache directory
 * fit to be written by this mount.
 */
export async function checkMountPlacement(cacheDir: string, mountpoint: string): Promise<void> {
  await requireMountpoint(mountpoint);
  refuseCacheInMountpoint(cacheDir, mountpoint);
  await ensurePrivateDir(cacheDir);
}

async function requireMountpoint(mountpoint: string): Promise<void> {
  const target = resolve(mountpoint);
  const st = await stat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new ClipError('ENOTFOUND', 'mountpoint does not exist', { object: target, cause: err });
    return undefined; // a stale mount (ENOTCONN) is the mount's to clean; anything else the mount reports
  });
  if (st && !st.isDirectory()) throw new ClipError('EINVAL', 'mountpoint is not a directory', { object: target });
}

/**
 * Refuse a cache directory at or below the mountpoint, before anything is mounted: the mount would
 * hide it, and the server would have to read and write its own cache through itself.
 */
export function refuseCacheInMountpoint(cacheDir: string, mountpoint: string): void {
  const mp = realish(mountpoint);
  const cache = realish(cacheDir);
  if (cache === mp || cache.startsWith(mp === '/' ? '/' : `${mp}/`)) {
    throw new ClipError('EINVAL', `the cache directory ${resolve(cacheDir)} is inside the mountpoint, which the mount would hide; choose another --cache-dir`, {
      object: resolve(mountpoint),
    });
  }
}

/** The real path of `p`, or of its nearest existing ancestor with the rest appended (it may not exist yet). */
function realish(p: string): string {
  const abs = resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(realish(parent), basename(abs));
  }
}
