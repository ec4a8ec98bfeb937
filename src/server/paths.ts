/**
 * Where the node's server keeps its files. The socket and the holder's lock are runtime state:
 * under /run/clip (a tmpfs, gone at reboot like the mounts, never full when the cache disk is,
 * and short enough for a socket's path), one directory per cache directory. The log is kept with
 * the cache, in CACHE_DIR/server/.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { processStartTime } from '../mount/files.js';

export interface ServerFiles {
  /** The runtime directory: /run/clip/<hash of the cache directory>. */
  runDir: string;
  /** The control socket `clip mount`, `clip unmount` and `clip mounts` talk to. */
  socket: string;
  /** The holder's pid and start time: one holder per cache directory. */
  lock: string;
  logDir: string;
  /** The holder's and the server's log (every mount of the node). */
  log: string;
}

export const RUN_ROOT = '/run/clip';

export function serverFiles(cacheDir: string): ServerFiles {
  const abs = resolve(cacheDir);
  const runDir = join(RUN_ROOT, createHash('sha256').update(abs).digest('hex').slice(0, 16));
  const logDir = join(abs, 'server');
  return { runDir, socket: join(runDir, 'control.sock'), lock: join(runDir, 'holder.pid'), logDir, log: join(logDir, 'server.log') };
}

/** The pid of the live holder a lock file names (pid and start time), or undefined. */
export function liveHolder(lock: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(lock, 'utf8');
  } catch {
    return undefined;
  }
  const [pid, start] = text.split('\n');
  return pid && start && processStartTime(Number(pid)) === start ? Number(pid) : undefined;
}
