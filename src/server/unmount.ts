/**
 * `clip unmount`: a mount of the node's server is unmounted by the server (the others it serves go
 * on); any other clip mount (a foreground `clip mount`, a dead server's) as src/mount/unmount.ts does.
 */
import { resolve } from 'node:path';
import { unmountMountpoint, type UnmountCommandOptions, type UnmountResult } from '../mount/unmount.js';
import { defaultCacheDir } from '../storage/cache-dir.js';
import { askServer, unwrap } from './client.js';
import { liveHolder, serverFiles } from './paths.js';

/** How long an unmount waits for a restarting server. */
const START_WAIT_MS = 15_000;

export async function unmount(mountpoint: string, opts: UnmountCommandOptions = {}): Promise<UnmountResult> {
  const target = resolve(mountpoint);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const ask = (): ReturnType<typeof askServer> =>
    askServer(cacheDir, { op: 'unmount', mountpoint: target, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  let reply = await ask();
  // A holder without a server is restarting it: wait for the server rather than signal the process
  // the mount's pid file names (which would be that server, serving every other mount too).
  for (const until = Date.now() + START_WAIT_MS; !reply && liveHolder(serverFiles(cacheDir).lock) !== undefined && Date.now() < until; ) {
    await new Promise((r) => setTimeout(r, 100));
    reply = await ask();
  }
  if (reply) {
    const done = unwrap(reply);
    if (done.op === 'unmount' && done.served) return { how: 'server', pid: done.pid };
  }
  return unmountMountpoint(target, opts);
}
