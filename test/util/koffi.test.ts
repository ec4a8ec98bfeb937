/**
 * koffi's binding without the package's entry point: it calls into libc as the entry point's
 * object does, and loading it brings none of the install tooling's modules (https, tls, http)
 * into the process. A fresh node, so that nothing else loaded them before.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('loadKoffi', () => {
  it('calls into libc and loads no https, tls or http module', () => {
    const code = `const { loadKoffi } = await import('./src/util/koffi.ts');
      const before = new Set(process.moduleLoadList);
      const koffi = loadKoffi();
      const pid = koffi.load('libc.so.6').func('int getpid()')();
      const added = process.moduleLoadList.filter((m) => !before.has(m));
      console.log(JSON.stringify({ pid, self: process.pid, added, again: loadKoffi() === koffi, preloaded: before.has('NativeModule https') }));`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(run.status, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout.trim().split('\n').pop()!) as { pid: number; self: number; added: string[]; again: boolean; preloaded: boolean };
    expect(out.preloaded).toBe(false); // else the check below could not fail
    expect(out.pid).toBe(out.self);
    expect(out.again).toBe(true);
    expect(out.added.filter((m) => /^NativeModule (https|tls|_http_\w+|zlib)$/.test(m))).toEqual([]);
  });

});
