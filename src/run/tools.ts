/** The system tools `clip run` drives (mount, umount, runc), run to completion. */
import { spawn } from 'node:child_process';
import { ClipError } from '../util/errors.js';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tool(cmd: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolveRun) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolveRun({ code: -1, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code, signal) => resolveRun({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
  });
}

/** Run a tool that must succeed; its failure is an error naming `object`. */
export async function mustRun(cmd: string, args: string[], object: string, what: string): Promise<ToolResult> {
  const r = await tool(cmd, args);
  if (r.code !== 0) {
    const why = r.stderr.trim() || `exit code ${r.code}`;
    throw new ClipError(r.code === -1 ? 'ENOTFOUND' : 'EIO', `${what} failed: ${why}`, { object });
  }
  return r;
}
