/**
 * What a mount lets other local users do: by default nothing the served tree's owner bits would
 * not (default_permissions), no setuid (nosuid) and no device nodes (nodev); an overlay with the
 * mount as its lower layer, as a container runtime makes, still runs the setuid program as root
 * (the overlay is a mount of its own, with its own flags).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeDev, mount, type Mount } from '../../src/fuse/index.js';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { skipUnlessRoot } from '../support/env.js';
import { MemFs, S_IFCHR } from './memfs.js';
import { python, run } from './tools.js';

const NOBODY = '65534';

function buildFs(): MemFs {
  const fs = new MemFs();
  const bin = fs.mkdir(1, 'bin');
  // A real program, setuid root: `id -u` prints the effective uid it runs with.
  fs.file(bin, 'id', readFileSync('/usr/bin/id'), { mode: 0o104755 });
  fs.special(1, 'null', S_IFCHR | 0o666, makeDev(1, 3));
  fs.file(1, 'secret', Buffer.from('root only\n'), { mode: 0o100600 });
  return fs;
}

/**
 * Run as nobody (setpriv is exec'd from the host, then execs the program: this process, which
 * serves the mount, is never blocked in spawn on an exec through its own mount).
 */
function asNobody(...argv: string[]): ReturnType<typeof run> {
  return run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...argv]);
}

/** Opening a file for writing, as nobody: "ok" or the errno's name (the system python: root's may be a shim nobody can run). */
function openAsNobody(file: string): ReturnType<typeof run> {
  return asNobody('/usr/bin/python3', '-c', 'import errno, os, sys\ntry:\n  os.close(os.open(sys.argv[1], os.O_WRONLY)); print("ok")\nexcept OSError as e:\n  print(errno.errorcode[e.errno])', file);
}

describe.skipIf(skipUnlessRoot())('a FUSE mount and other users', () => {
  let work: string;
  let plain: string;
  let trusting: string;
  let merged: string;
  const mounts: Mount[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'clip-fuse-sec-'));
    for (const d of ['plain', 'trusting', 'merged', 'empty']) await run('mkdir', ['-m', '0755', join(work, d)]);
    await run('chmod', ['0755', work]);
    [plain, trusting, merged] = ['plain', 'trusting', 'merged'].map((d) => join(work, d)) as [string, string, string];
    mounts.push(await mount(buildFs(), plain, { fsname: 'cliptest' }));
    mounts.push(await mount(buildFs(), trusting, { fsname: 'cliptest', suid: true, dev: true }));
    // Two lower layers and no upper: a read-only overlay, its own mount with its own (default) flags.
    const ov = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${plain}:${join(work, 'empty')}`, merged]);
    expect(ov.stderr).toBe('');
  });

  afterAll(async () => {
    if (merged && mountsAt(merged).length > 0) await run('umount', [merged]);
    for (const m of mounts) await m.unmount();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('mounts nosuid,nodev unless asked', () => {
    const flags = (dir: string): string[] => (readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir) ?? '').split(' ')[5]!.split(',');
    expect(flags(plain)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    expect(flags(trusting)).not.toContain('nosuid');
    expect(flags(trusting)).not.toContain('nodev');
  });

  test('a setuid-root program on the mount does not make another user root; through an overlay it runs as root', async () => {
    const direct = await asNobody(join(plain, 'bin/id'), '-u');
    expect(direct.stderr).toBe('');
    expect(direct.stdout).toBe(`${NOBODY}\n`);
    const overlaid = await asNobody(join(merged, 'bin/id'), '-u');
    expect(overlaid.stderr).toBe('');
    expect(overlaid.stdout).toBe('0\n');
    expect((await asNobody(join(trusting, 'bin/id'), '-u')).stdout).toBe('0\n');
  });

  test('a device node on the mount cannot be opened unless asked', async () => {
    expect((await openAsNobody(join(plain, 'null'))).stdout).toBe('EACCES\n');
    expect((await openAsNobody(join(trusting, 'null'))).stdout).toBe('ok\n');
  });

  test('the image\'s permission bits hold for other users', async () => {
    const r = await asNobody('cat', join(plain, 'secret'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    expect((await python('import sys; print(open(sys.argv[1]).read(), end="")', join(plain, 'secret'))).stdout).toBe('root only\n');
  });
});
