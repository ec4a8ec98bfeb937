/**
 * The commands of this issue on a fresh commander program, run in-process with stdout and stderr
 * captured; and the same program as a real process (`node --import tsx clip-entry.ts`), for what
 * only a process shows (binary stdout, exit codes, no network at start).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { registerCache } from '../../src/cli/commands/cache.js';
import { registerCat } from '../../src/cli/commands/cat.js';
import { registerExtract } from '../../src/cli/commands/extract.js';
import { registerIndex } from '../../src/cli/commands/index.js';
import { registerLs } from '../../src/cli/commands/ls.js';
import { registerStat } from '../../src/cli/commands/stat.js';

export function clipProgram(): Command {
  const program = new Command('clip').exitOverride();
  for (const register of [registerIndex, registerLs, registerStat, registerCat, registerExtract, registerCache]) register(program);
  return program;
}

export interface Run {
  stdout: Buffer;
  stderr: string;
}

let running = false;

/** Run `clip ARGS` in this process; resolves with what it printed, rejects with its error. */
export async function clip(...args: string[]): Promise<Run> {
  if (running) throw new Error('clip() runs one command at a time (it captures process.stdout)');
  running = true;
  const out: Buffer[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  const capture = (into: (c: Buffer) => void) => ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    into(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    const cb = rest.find((r): r is () => void => typeof r === 'function');
    cb?.();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture((c) => out.push(c));
  process.stderr.write = capture((c) => err.push(c.toString('utf8')));
  try {
    await clipProgram().parseAsync(['node', 'clip', ...args]);
    return { stdout: Buffer.concat(out), stderr: err.join('') };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
    running = false;
  }
}

const ENTRY = fileURLToPath(new URL('./clip-entry.ts', import.meta.url));
/** The real entry point, with every command (mount included). */
export const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface ProcessRun extends Run {
  /** null when it was killed (by a signal, or at `timeoutMs`). */
  code: number | null;
  ms: number;
}

/** Run `clip ARGS` as its own process (this commands; `entry: MAIN` for the real one), killed after `timeoutMs`, as `uid`/`gid` when given. */
export function clipProcess(args: string[], env: NodeJS.ProcessEnv = {}, opts: { entry?: string; timeoutMs?: number; uid?: number; gid?: number } = {}): Promise<ProcessRun> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', opts.entry ?? ENTRY, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}), ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr, ms: Date.now() - started });
    });
  });
}
