/**
 * `clip bundle IMAGE DIR` for any OCI runtime: DIR/config.json and DIR/rootfs (the writable overlay
 * on the shared image mount), run here by runc with its own root; `clip bundle --remove DIR` undoes it all.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipUnlessRoot } from '../support/env.js';
import { run } from '../fuse/tools.js';
import { buildRunImages, type RunImages } from './image.js';
import { clip, mountsUnder, NOTHING_LEFT, runState } from './helpers.js';

describe.skipIf(skipUnlessRoot())('clip bundle', () => {
  let tmp: string;
  let cache: string;
  let images: RunImages;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-bundle-'));
    cache = join(tmp, 'cache');
    images = await buildRunImages(join(tmp, 'layout'));
  });
  afterAll(async () => {
    if (!tmp) return;
    for (const m of mountsUnder(tmp).reverse()) await run('umount', ['-l', m.mountPoint]);
    await clip(['run', '--cleanup', '--cache-dir', cache]).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes a bundle runc runs as it is, which survives clip run --cleanup, and --remove leaves nothing', async () => {
    const dir = join(tmp, 'b1');
    const made = await clip(['bundle', images.app, dir, '--cache-dir', cache, '--', 'echo "$GREETING from $(pwd) as $(id -un)"; cat /etc/hostname > /dev/null; echo written > /srv/data/new; cat /srv/data/new']);
    expect(made.stderr).toMatch(/bundle of .* in .*b1 \(config\.json, rootfs\)/);
    expect(made.code).toBe(0);
    expect(made.stdout).toBe(`${dir}\n`);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { root: { path: string }; process: { user: { uid: number }; cwd: string } };
    expect(config.root.path).toBe('rootfs');
    expect(config.process.user.uid).toBe(1000);
    expect(config.process.cwd).toBe('/srv/data');
    expect(mountsUnder(join(dir, 'rootfs')).map((m) => m.fsType)).toEqual(['overlay']);
    // A bundle is owned by its directory: a sweep leaves it.
    await clip(['run', '--cleanup', '--cache-dir', cache]);
    expect(mountsUnder(join(dir, 'rootfs'))).toHaveLength(1);

    const runcRoot = join(tmp, 'runc');
    const r = await run('runc', ['--root', runcRoot, 'run', '--bundle', dir, 'clip-bundle-test'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello from /srv/data as app\nwritten\n');
    expect(r.code).toBe(0);
    await run('runc', ['--root', runcRoot, 'delete', '--force', 'clip-bundle-test']);

    const removed = await clip(['bundle', '--remove', dir, '--cache-dir', cache]);
    expect(removed.stderr).toBe('');
    expect(removed.code).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    const state = await runState(cache);
    expect({ ...state, runc: [] }).toEqual(NOTHING_LEFT);
  });

  it('refuses a directory that is not empty, and --remove of one it did not make', async () => {
    const full = join(tmp, 'full');
    await run('mkdir', ['-p', full]);
    await writeFile(join(full, 'x'), '');
    const r = await clip(['bundle', images.bare, full, '--cache-dir', cache]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/full: is not empty/);
    const other = await clip(['bundle', '--remove', full, '--cache-dir', cache]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/full: not a bundle clip made/);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });
});
