/**
 * `clip unmount`: a mount of the node's server is unmounted by the server (the others it serves go
 * on); any other clip mount (a foreground `clip mount`, a dead server's) as src/mount/unmount.ts does.
 */
import { resolve } from 'node:path';
import { unmountMountpoint, type UnmountCommandOptions, type UnmountResult } from '../mount/unmount.js';
import { defaultCacheDir } from '../storage/cache-dir.js';
import { askServer, unwrap } from './client.js';

export async function unmount(mountpoint: string, opts: UnmountCommandOptions = {}): Promise<UnmountResult> {
  const target = resolve(mountpoint);
  const reply = await askServer(opts.cacheDir ?? defaultCacheDir(), { op: 'unmount', mountpoint: target, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  if (reply) {
    const done = unwrap(reply);
    if (done.op === 'unmount' && done.served) return { how: 'server', pid: done.pid };
  }
  return unmountMountpoint(target, opts);
}
