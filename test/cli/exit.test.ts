/**
 * src/cli/exit.ts in a process of its own: a command's outcome is the exit status, one line for a
 * ClipError (names in it escaped), and a command that can never finish exits 70, not 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const EXIT = fileURLToPath(new URL('../../src/cli/exit.ts', import.meta.url));
const ERRORS = fileURLToPath(new URL('../../src/util/errors.ts', import.meta.url));

/** Run `body` (module code, with runCommand and ClipError in scope) as a process. */
function runScript(body: string): Promise<{ code: number | null; stderr: string }> {
  const script = `import { runCommand } from ${JSON.stringify(EXIT)}; import { ClipError } from ${JSON.stringify(ERRORS)};\n${body}`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('runCommand', () => {
  it('exits 70 with a line saying so when the command waits on a promise nothing will settle', async () => {
    const r = await runScript('runCommand(() => new Promise(() => {}));');
    expect(r).toEqual({ code: 70, stderr: 'clip: internal error: the command stopped before it finished (it waited on something that never completed)\n' });
  });

  it('exits 0 when the command finishes, 1 with one escaped line for a ClipError, 2 with a stack otherwise', async () => {
    const [ok, clipErr, bug] = await Promise.all([
      runScript('runCommand(async () => {});'),
      runScript(String.raw`runCommand(async () => { throw new ClipError('ENOTFOUND', 'no such file', { object: '/etc/\x1b]0;pwned\x07x\ny' }); });`),
      runScript(`runCommand(async () => { throw new TypeError('boom'); });`),
    ]);
    expect(ok).toEqual({ code: 0, stderr: '' });
    expect(clipErr).toEqual({ code: 1, stderr: 'clip: /etc/\\x1b]0;pwned\\x07x\\x0ay: no such file\n' });
    expect(bug.code).toBe(2);
    expect(bug.stderr).toMatch(/^clip: TypeError: boom\n {4}at /);
  });

  it('leaves an explicit exit alone (commander exits 0 after --help)', async () => {
    expect(await runScript('runCommand(() => { process.exit(0); });')).toEqual({ code: 0, stderr: '' });
  });
});
