/** Running the clip CLI (mount commands) as a child process, and waiting on mounts. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { mountFiles } from '../../src/mount/files.js';
import { serverFiles } from '../../src/server/paths.js';
import { waitFor } from '../../src/util/wait.js';
import { run } from '../fuse/tools.js';

export const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `clip ARGS` to completion. */
export function clip(args: string[], opts: { uid?: number; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`clip ${args.join(' ')} did not finish in time\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Start `clip ARGS` and resolve with the process once it prints its first stdout line. */
export function clipUntilLine(args: string[]): Promise<{ proc: ChildProcess; line: string; exited: Promise<CliResult> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<CliResult>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolve({ proc, line: stdout.slice(0, nl), exited });
    });
    void exited.then((r) => reject(new Error(`clip exited (${r.code ?? r.signal}) before a line: ${r.stderr}`)));
  });
}

export function fuseMounted(dir: string): boolean {
  return mountsAt(dir).some((m) => m.fsType.startsWith('fuse'));
}

export const waitUntil = waitFor;

/** A fresh mountpoint and cache directory for one test. */
export async function scratch(prefix: string): Promise<{ mnt: string; cache: string }> {
  return { mnt: await mkdtemp(join(tmpdir(), `${prefix}-mp-`)), cache: await mkdtemp(join(tmpdir(), `${prefix}-cache-`)) };
}

/** Whatever a test left mounted there is unmounted (by clip, else lazily), and both directories go. */
export async function cleanScratch({ mnt, cache }: { mnt: string; cache: string }): Promise<void> {
  if (fuseMounted(mnt)) await clip(['unmount', mnt, '--cache-dir', cache]);
  if (fuseMounted(mnt)) await run('umount', ['-l', mnt]);
  await rm(mnt, { recursive: true, force: true });
  await rm(cache, { recursive: true, force: true });
}

/** The pid of the node server's holder for `cache` (from its lock file). */
export function holderPidOf(cache: string): number {
  return Number(readFileSync(serverFiles(cache).lock, 'utf8').split('\n')[0]);
}

/** kill -9 the holder, then the server: nothing keeps the mounts' connections any more. */
export async function killServerAndHolder(cache: string, mnt: string): Promise<void> {
  const server = daemonPidOf(cache, mnt);
  process.kill(holderPidOf(cache), 'SIGKILL');
  process.kill(server, 'SIGKILL');
  await waitUntil(() => !existsSync(`/proc/${server}`), 5000);
}

/** The pid the process serving the mount at `mnt` recorded (the node's server for a background mount). */
export function daemonPidOf(cache: string, mnt: string): number {
  return Number(readFileSync(mountFiles(cache, mnt).pid, 'utf8').split('\n')[0]);
}
