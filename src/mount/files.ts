/** Where a mount's daemon keeps its pid and log: CACHE_DIR/mounts/<escaped mountpoint>.{pid,log}. */
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export interface MountFiles {
  dir: string;
  pid: string;
  log: string;
}

/** A mountpoint as one file name: "/" becomes "-", anything unusual %XX (reversible, no collisions). */
export function escapeMountpoint(mountpoint: string): string {
  const abs = resolve(mountpoint);
  return abs.replace(/[^A-Za-z0-9._/]|-/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/\//g, '-');
}

export function mountFiles(cacheDir: string, mountpoint: string): MountFiles {
  const dir = join(cacheDir, 'mounts');
  const base = join(dir, escapeMountpoint(mountpoint));
  return { dir, pid: `${base}.pid`, log: `${base}.log` };
}

/** The pid file's content: the pid, then the mountpoint it serves (to tell a reused pid apart). */
export function pidFileText(mountpoint: string, pid = process.pid): string {
  return `${pid}\n${resolve(mountpoint)}\n`;
}

/** The live daemon recorded for `mountpoint`, or undefined (no file, dead process, or a reused pid). */
export async function daemonPid(files: MountFiles, mountpoint: string): Promise<number | undefined> {
  const text = await readFile(files.pid, 'utf8').catch(() => '');
  const [pidLine, recorded] = text.split('\n');
  const pid = Number(pidLine);
  if (!Number.isSafeInteger(pid) || pid <= 0 || recorded !== resolve(mountpoint)) return undefined;
  if (!alive(pid)) return undefined;
  // The pid is alive: make sure it is still a node process (not an unrelated one that reused the pid).
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!/node|clip/.test(cmdline)) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove the pid file if it is still ours. */
export async function removePidFile(files: MountFiles, pid = process.pid): Promise<void> {
  const text = await readFile(files.pid, 'utf8').catch(() => '');
  if (Number(text.split('\n')[0]) === pid) await rm(files.pid, { force: true });
}
