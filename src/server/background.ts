/**
 * `clip mount --background`: the node's server (one per cache directory, started when none runs)
 * mounts and serves the image, and this returns once the mount is ready or fails with its error.
 * The configuration goes over the server's private control socket, never through arguments:
 * /proc/PID/cmdline is readable by every user, and it may hold a shared cache's password.
 */
import { daemonPid, mountFiles, type MountFiles } from '../mount/files.js';
import type { MountConfig } from '../mount/serve.js';
import { defaultCacheDir, ensurePrivateDir } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { askServer, unwrap } from './client.js';

export interface BackgroundMount {
  pid: number;
  /** The ready line. */
  line: string;
  files: MountFiles;
  /** The server's log. */
  log: string;
}

/** `cfg` must hold absolute paths (the server runs from "/"). */
export async function startBackground(cfg: MountConfig): Promise<BackgroundMount> {
  const cacheDir = cfg.cacheDir ?? defaultCacheDir();
  const files = mountFiles(cacheDir, cfg.mountpoint);
  await ensurePrivateDir(files.dir);
  const serving = await daemonPid(files, cfg.mountpoint);
  if (serving !== undefined) {
    throw new ClipError('EINVAL', `already mounted by clip (pid ${serving}); clip unmount it first`, { object: cfg.mountpoint });
  }
  const reply = unwrap((await askServer(cacheDir, { op: 'mount', config: cfg }, { start: true }))!);
  if (reply.op !== 'mount') throw new ClipError('EINVAL', 'the clip server answered another request', { object: cfg.mountpoint });
  return { pid: reply.pid, line: reply.line, files, log: reply.log };
}
