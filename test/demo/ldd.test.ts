import { describe, expect, it } from 'vitest';
import { parseLdd, sharedLibraries } from '../../src/demo/ldd.js';
import { isClipError } from '../../src/util/errors.js';

describe('parseLdd', () => {
  it('takes library paths and the loader, skipping the vDSO', () => {
    const out = [
      '\tlinux-vdso.so.1 (0x00007ffd1b5f2000)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f2a1c000000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a1bc00000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f2a1c4a0000)',
      '',
    ].join('\n');
    expect(parseLdd(out, 'node')).toEqual(['/lib/x86_64-linux-gnu/libstdc++.so.6', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  });

  it('reports a missing library naming the program', () => {
    const err = (() => { try { parseLdd('\tlibgone.so.1 => not found\n', '/usr/bin/x'); } catch (e) { return e; } })();
    expect(isClipError(err, 'ENOTFOUND')).toBe(true);
    expect((err as Error).message).toMatch(/^\/usr\/bin\/x: .*libgone\.so\.1/);
  });

  it('finds nothing in a static binary', () => {
    expect(parseLdd('\tstatically linked\n', 'x')).toEqual([]);
  });
});

describe('sharedLibraries', () => {
  it('lists what this node binary really needs, the C library and the loader included', async () => {
    const libs = await sharedLibraries(process.execPath);
    expect(libs.some((p) => /\/libc\.so\.6$/.test(p))).toBe(true);
    expect(libs.some((p) => /\/ld-linux[^/]*\.so\.\d$/.test(p))).toBe(true);
  });

  it('fails on a file that is no program, naming it', async () => {
    await expect(sharedLibraries('/nonexistent/prog')).rejects.toThrow('/nonexistent/prog');
  });
});
