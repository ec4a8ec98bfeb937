/**
 * A cache directory on a full disk (a small tmpfs, filled): the mount starts, in the background
 * and in the foreground, and serves the image's bytes from the registry; only caching is lost, the
 * index's included. Where not even a directory can be made (no inodes left), one clear line.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { serverFiles } from '../../src/server/paths.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { snapshotTree, umociUnpack, type TreeNode } from '../support/tools.js';
import { python, run } from '../fuse/tools.js';
import { clip, clipUntilLine, fuseMounted, waitUntil } from './helpers.js';

const FILES = ['opt/app/large.bin', 'usr/lib/libdemo.so.1', 'etc/hostname', 'usr/share/many/file-150.txt'];

/** sha256 of each file read through the mount (or the errno's name), by a child process. */
async function sums(dir: string): Promise<string[]> {
  const r = await python(String.raw`
import errno, hashlib, os, sys
for rel in sys.argv[2:]:
    try:
        with open(os.path.join(sys.argv[1], rel), 'rb') as f: print(hashlib.sha256(f.read()).hexdigest())
    except OSError as e:
        print(errno.errorcode[e.errno])
`, dir, ...FILES);
  return r.stdout.trim().split('\n');
}

describe.skipIf(skipUnlessRoot())('a mount whose cache disk is full', () => {
  let registry: TestRegistry;
  let work: string;
  let full: string;
  let mnt: string;
  let indexFile: string;
  let ref: string;
  let oracle: Map<string, TreeNode>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-full-'));
    registry = await startRegistry();
    ref = await pushFixture('basic', registry.host);
    const fx = await fixture('basic');
    oracle = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag!, join(work, 'unpack')));
    // An index made with a healthy cache; the full cache then has nothing of the image.
    mnt = join(work, 'mnt');
    const healthy = join(work, 'healthy');
    await run('mkdir', ['-p', mnt, healthy]);
    expect((await clip(['mount', ref, mnt, '--cache-dir', healthy, '--background'])).code).toBe(0);
    expect((await clip(['unmount', mnt, '--cache-dir', healthy])).code).toBe(0);
    indexFile = join(healthy, 'indexes', readdirSync(join(healthy, 'indexes'))[0]!);
    full = join(work, 'full');
    await run('mkdir', ['-p', full]);
    expect((await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', full])).code).toBe(0);
    await run('dd', ['if=/dev/zero', `of=${join(full, 'filler')}`, 'bs=64k']); // until ENOSPC
    expect((await run('df', ['--output=avail', full])).stdout.trim().split('\n')[1]!.trim()).toBe('0');
  }, 180_000);
  afterAll(async () => {
    if (mnt && fuseMounted(mnt)) await run('umount', ['-l', mnt]);
    if (full && mountsAt(full).length > 0) await run('umount', [full]);
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const expected = (): string[] => FILES.map((f) => oracle.get(f)!.sha256!);

  it('in the background: starts, serves the right bytes, and unmounts', async () => {
    const r = await clip(['mount', indexFile, mnt, '--cache-dir', full, '--background'], { timeoutMs: 60_000 });
    expect(r.stderr).toContain("served by the node's clip server");
    expect(r.code).toBe(0);
    expect(await sums(mnt)).toEqual(expected());
    expect(await sums(mnt)).toEqual(expected()); // again: nothing was cached, nothing went wrong
    const u = await clip(['unmount', mnt, '--cache-dir', full]);
    expect(u.code).toBe(0);
    expect(fuseMounted(mnt)).toBe(false);
    // The server and its holder end by themselves soon after; until then their log keeps the
    // full filesystem busy.
    expect(await waitUntil(() => !existsSync(serverFiles(full).lock), 20_000)).toBe(true);
  });

  it('in the foreground: starts, serves the right bytes, and stops cleanly', async () => {
    const fg = await clipUntilLine(['mount', indexFile, mnt, '--cache-dir', full]);
    expect(fg.line).toContain(`on ${mnt}`);
    expect(await sums(mnt)).toEqual(expected());
    fg.proc.kill('SIGTERM');
    const done = await fg.exited;
    expect(done.code).toBe(0);
    expect(done.stderr).not.toMatch(/\n\s+at /); // no stack
    expect(fuseMounted(mnt)).toBe(false);
  });

  it('in the foreground, of an image not indexed yet: indexes it in memory and serves it', async () => {
    const fg = await clipUntilLine(['mount', ref, mnt, '--cache-dir', full]);
    expect(fg.line).toMatch(/\(\d+ entries, indexed now\)$/);
    expect(await sums(mnt)).toEqual(expected());
    fg.proc.kill('SIGTERM');
    expect((await fg.exited).code).toBe(0);
    expect(fuseMounted(mnt)).toBe(false);
  });

  it('with no inode left: one clear line, in the background and in the foreground, and nothing mounted', async () => {
    const noInodes = join(work, 'no-inodes');
    await run('mkdir', ['-p', noInodes]);
    expect((await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=8,mode=0700', 'tmpfs', noInodes])).code).toBe(0);
    try {
      await python('import os, sys\ni = 0\nwhile True:\n  try: open(os.path.join(sys.argv[1], f"f{i}"), "w").close(); i += 1\n  except OSError: break', noInodes);
      for (const extra of [['--background'], []]) {
        const r = await clip(['mount', indexFile, mnt, '--cache-dir', noInodes, ...extra], { timeoutMs: 60_000 });
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/^clip: \/\S+: cannot mkdir it: no space left on device \(ENOSPC\)\n$/);
        expect(fuseMounted(mnt)).toBe(false);
      }
    } finally {
      await run('umount', [noInodes]);
    }
  });
});
