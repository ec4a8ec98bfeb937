/** `clip run` and `clip bundle` as real processes (the real entry point), and what they leave on the machine. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMountInfo } from '../../src/fuse/mountinfo.js';
import { run } from '../fuse/tools.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface ClipRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Started {
  proc: ChildProcess;
  /** Everything printed so far. */
  out: () => string;
  err: () => string;
  /** Resolves once stdout holds `text`. */
  waitFor: (text: string, ms?: number) => Promise<void>;
  /** Settles when the process exits (not when its pipes close: a container it left may hold them). */
  exited: Promise<ClipRun>;
}

/** Start `clip ARGS` (stdin /dev/null unless `stdin` is given). */
export function startClip(args: string[], opts: { stdin?: string } = {}): Started {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (opts.stdin !== undefined) proc.stdin!.end(opts.stdin);
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  proc.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiters.filter((x) => stdout.includes(x.text))) w.resolve();
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = (stream: NodeJS.ReadableStream & { readableEnded: boolean }): Promise<void> =>
    stream.readableEnded ? Promise.resolve() : new Promise((resolve) => stream.once('end', resolve));
  const exited = new Promise<ClipRun>((resolve) => {
    proc.on('exit', (code, signal) => {
      // What it wrote is all delivered once its pipes end; a container of a killed run may still
      // hold them open, so not waited for past a few seconds.
      void Promise.race([Promise.all([ended(proc.stdout!), ended(proc.stderr!)]), new Promise((r) => setTimeout(r, 3000))]).then(() =>
        // Indexing progress (the first run of an image) is not what the tests look at.
        resolve({ code, signal, stdout, stderr: stderr.replace(/^indexing: .*\n?/gm, '') }),
      );
    });
  });
  return {
    proc, exited, out: () => stdout, err: () => stderr,
    waitFor: (text, ms = 60_000) => new Promise<void>((resolve, reject) => {
      if (stdout.includes(text)) return resolve();
      const timer = setTimeout(() => reject(new Error(`no "${text}" within ${ms} ms; stdout: ${stdout}; stderr: ${stderr}`)), ms);
      waiters.push({ text, resolve: () => { clearTimeout(timer); resolve(); } });
      void exited.then((r) => {
        if (!stdout.includes(text)) reject(new Error(`clip exited (${r.code ?? r.signal}) before "${text}"; stdout: ${r.stdout}; stderr: ${r.stderr}`));
      });
    }),
  };
}

/** Run `clip ARGS` to its end. */
export async function clip(args: string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<ClipRun> {
  const started = startClip(args, opts);
  const timer = setTimeout(() => started.proc.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const r = await started.exited;
  clearTimeout(timer);
  return r;
}

/** Mounts at or below `dir`. */
export function mountsUnder(dir: string): { mountPoint: string; fsType: string }[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`));
}

/** The containers runc knows under this cache directory's runc root. */
export async function runcContainers(cacheDir: string): Promise<string[]> {
  const r = await run('runc', ['--root', join(cacheDir, 'run', 'runc'), 'list', '--quiet']);
  return r.stdout.split('\n').filter(Boolean);
}

/** What `clip run` keeps under the cache dir: container and image directories. */
export async function runState(cacheDir: string): Promise<{ containers: string[]; images: string[]; mounts: string[]; runc: string[] }> {
  return {
    containers: await readdir(join(cacheDir, 'run', 'containers')).catch(() => []),
    images: await readdir(join(cacheDir, 'run', 'images')).catch(() => []),
    mounts: mountsUnder(cacheDir).map((m) => `${m.fsType} ${m.mountPoint}`),
    runc: await runcContainers(cacheDir),
  };
}

export const NOTHING_LEFT = { containers: [], images: [], mounts: [], runc: [] };
