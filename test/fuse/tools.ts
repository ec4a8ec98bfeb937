import { execFile, spawn } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a program without blocking the event loop: the FUSE server answering it lives on this
 * thread, so a synchronous spawn (or a synchronous fs call on the mount) would deadlock.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A python3 one-liner (the attr package is not installed; python's os module has the xattr calls). */
export function python(code: string, ...args: string[]): Promise<RunResult> {
  return run('python3', ['-c', code, ...args]);
}

export { spawn };
