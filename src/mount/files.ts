/**
 * Where the process serving a mount keeps its pid (and status, src/mount/status.ts):
 * CACHE_DIR/mounts/<escaped mountpoint>.{pid,json}. Logs are the server's (src/server/paths.ts).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { MountInfo } from '../fuse/mountinfo.js';
import { readPrivateFile, writeSmallPrivateFileSync } from '../storage/cache-dir.js';

/** The fsname and subtype of clip's mounts: how `clip unmount` tells them from others'. */
export const CLIP_FSNAME = 'clip';

/** What clip's own mounts look like in mountinfo (a dead server's stale mount included). */
export function isClipMount(m: MountInfo, uid = process.geteuid?.() ?? 0): boolean {
  return m.fsType === `fuse.${CLIP_FSNAME}` && m.source === CLIP_FSNAME && m.superOptions.includes(`user_id=${uid}`);
}

export interface MountFiles {
  dir: string;
  pid: string;
}

/**
 * A mountpoint as one file name: the leading "/" dropped, the others "-", "-" and anything unusual
 * %XX (reversible, no collisions); "/" itself is "%2f".
 */
export function escapeMountpoint(mountpoint: string): string {
  const abs = resolve(mountpoint);
  if (abs === '/') return '%2f';
  return abs.slice(1).replace(/[^A-Za-z0-9._/]|-/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/\//g, '-');
}

export function mountFiles(cacheDir: string, mountpoint: string): MountFiles {
  const dir = join(cacheDir, 'mounts');
  const base = join(dir, escapeMountpoint(mountpoint));
  return { dir, pid: `${base}.pid` };
}

/**
 * When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since boot), or undefined
 * if there is no such process. With the pid it names one process for sure: a pid can be reused, a
 * (pid, start time) pair cannot.
 */
export function processStartTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** Whether `pid` has ended (gone, or a zombie nobody reaped yet). */
export function processEnded(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state === undefined || state === 'Z';
}

/** /proc/PID/stat's fields from the third on (the state first), or undefined when PID is gone. */
function statFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The pid file's content: the pid, the mountpoint it serves, and the process's start time. */
export function pidFileText(mountpoint: string, pid = process.pid, startTime = processStartTime(pid)): string {
  return `${pid}\n${resolve(mountpoint)}\n${startTime ?? ''}\n`;
}

export async function writePidFile(files: MountFiles, mountpoint: string): Promise<void> {
  // A mount is reported ready once this is written: a few bytes, not queued behind the pool's work.
  writeSmallPrivateFileSync(files.pid, pidFileText(mountpoint));
}

/**
 * The live daemon recorded for `mountpoint`, or undefined: no file, a dead process, or a process
 * that is not the one recorded (its start time differs: the pid was reused by something else).
 */
export async function daemonPid(files: MountFiles, mountpoint: string): Promise<number | undefined> {
  const text = (await readPrivateFile(files.pid)) ?? '';
  const [pidLine, recorded, startTime] = text.split('\n');
  const pid = Number(pidLine);
  if (!Number.isSafeInteger(pid) || pid <= 0 || recorded !== resolve(mountpoint) || !startTime) return undefined;
  return processStartTime(pid) === startTime ? pid : undefined;
}

/** Remove the pid file if it is still ours. */
export async function removePidFile(files: MountFiles, pid = process.pid): Promise<void> {
  const text = (await readPrivateFile(files.pid)) ?? '';
  if (Number(text.split('\n')[0]) === pid) await rm(files.pid, { force: true });
}
