/**
 * `clip unmount MOUNTPOINT`: ask the daemon serving it to stop (SIGTERM through its pid file) and
 * wait; without a live daemon, unmount directly: a stale mount is aborted and removed, a live
 * one unmounted lazily if busy and its connection aborted if it does not end. Only what is clip's
 * is touched: the daemon is the process its pid file names by pid and start time, and a mount
 * without one must be a clip mount (type fuse.clip, source "clip", mounted for this user).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { abortConnection, cleanStaleMount } from '../fuse/index.js';
import { isFuse, mountsAt } from '../fuse/mountinfo.js';
import { defaultCacheDir } from '../storage/cache-dir.js';
import { ClipError, isClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { daemonPid, isClipMount, mountFiles, processStartTime } from './files.js';
import { waitFor } from '../util/wait.js';

// Here since `clip unmount` asks it; it lives in files.ts so that checking a mount loads no FUSE code.
export { isClipMount };

export interface UnmountResult {
  /**
   * 'server': the node's server unmounted it; 'daemon': the serving process (a foreground mount)
   * stopped itself; 'direct': unmounted here; 'stale': a dead server's mount was removed.
   */
  how: 'server' | 'daemon' | 'direct' | 'stale';
  pid?: number;
}

export interface UnmountCommandOptions {
  cacheDir?: string;
  /** How long to wait for the daemon, then for the connection to end. Default 10 s. */
  timeoutMs?: number;
  logger?: Logger;
}

export async function unmountMountpoint(mountpoint: string, opts: UnmountCommandOptions = {}): Promise<UnmountResult> {
  const log = opts.logger ?? silentLogger;
  const target = resolve(mountpoint);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const files = mountFiles(opts.cacheDir ?? defaultCacheDir(), target);
  const pid = await daemonPid(files, target);
  if (pid !== undefined) {
    // Each signal goes only to the process recorded, never to one that took its pid meanwhile.
    const startTime = processStartTime(pid);
    const running = (): boolean => processStartTime(pid) === startTime;
    const signal = (sig: NodeJS.Signals): void => {
      if (running()) process.kill(pid, sig);
    };
    // First SIGTERM: unmount (lazily if busy). A second one after the timeout: abort the connection.
    signal('SIGTERM');
    let stopped = await waitFor(() => !running(), timeoutMs);
    if (!stopped) {
      log.warn({ pid, mountpoint: target }, 'unmount: the daemon is still busy; asking it to abort the connection');
      signal('SIGTERM');
      stopped = await waitFor(() => !running(), 5000);
    }
    if (!stopped) {
      log.warn({ pid, mountpoint: target }, 'unmount: the daemon does not stop; killing it and unmounting directly');
      signal('SIGKILL');
      await waitFor(() => !running(), 5000);
    }
    if (!fuseMounted(target)) return { how: 'daemon', pid };
  }
  const top = mountsAt(target).filter(isFuse).at(-1);
  if (!top) throw new ClipError('EINVAL', 'no clip mount here', { object: target });
  if (!isClipMount(top)) {
    throw new ClipError('EINVAL', `not a clip mount (a ${top.fsType} mount of "${top.source}"); clip unmounts only its own: use umount(8)`, { object: target });
  }
  if (await cleanStuckOrStale(target, timeoutMs / 2, log)) return { how: 'stale', ...(pid ? { pid } : {}) };
  const connection = connectionAt(target);
  if ((await run('umount', [target])) !== 0) await run('umount', ['-l', target]);
  if (!(await waitFor(() => !connectionOpen(connection), timeoutMs / 2))) await abortConnection(connection);
  if (fuseMounted(target)) throw new ClipError('EPERM', 'could not unmount', { object: target });
  return { how: 'direct', ...(pid ? { pid } : {}) };
}


/**
 * A dead server's mount is removed. So is the mount of a server that does not answer at all: its
 * connection is aborted first, since umount(8) itself would wait on it forever (it asks statfs).
 */
async function cleanStuckOrStale(target: string, answerMs: number, log: Logger): Promise<boolean> {
  try {
    return await cleanStaleMount(target, log, answerMs);
  } catch (err) {
    if (!isClipError(err, 'ETIMEOUT')) return false;
    const connection = connectionAt(target);
    log.warn({ mountpoint: target, connection }, 'unmount: the filesystem does not answer; aborting its connection');
    await abortConnection(connection);
    return cleanStaleMount(target, log, answerMs);
  }
}

/** The FUSE connection of the topmost FUSE mount on `target`, or -1. */
function connectionAt(target: string): number {
  return mountsAt(target).filter(isFuse).at(-1)?.minor ?? -1;
}

function fuseMounted(target: string): boolean {
  return mountsAt(target).some(isFuse);
}

function connectionOpen(n: number): boolean {
  return n >= 0 && existsSync(`/sys/fs/fuse/connections/${n}`);
}

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolveRun) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.on('error', () => resolveRun(-1));
    child.on('close', (code) => resolveRun(code ?? -1));
  });
}
