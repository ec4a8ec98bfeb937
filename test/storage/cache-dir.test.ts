import { chmod, chown, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultCacheDir, ensurePrivateDir, readPrivateFile, writePrivateFile, writeSmallPrivateFileSync } from '../../src/storage/cache-dir.js';
import { skipUnlessRoot } from '../support/env.js';
import { tempDir } from './helpers.js';

describe('cache directory', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('is /var/cache/clip for root and the XDG cache dir otherwise', () => {
    expect(defaultCacheDir({}, 0)).toBe('/var/cache/clip');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache', HOME: '/home/u' }, 1000)).toBe('/x/cache/clip');
    expect(defaultCacheDir({ HOME: '/home/u' }, 1000)).toBe('/home/u/.cache/clip');
    expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative', HOME: '/home/u' }, 1000)).toBe('/home/u/.cache/clip');
  });

  it('creates directories 0700 whatever the umask', async () => {
    const root = await tempDir();
    dirs.push(root);
    const old = process.umask(0o022);
    try {
      await ensurePrivateDir(path.join(root, 'a', 'b'));
    } finally {
      process.umask(old);
    }
    expect((await stat(path.join(root, 'a', 'b'))).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(root, 'a'))).mode & 0o777).toBe(0o700);
  });

  it('refuses a directory others can write, directly or by replacing a parent; a sticky parent is fine', async () => {
    const root = await tempDir();
    dirs.push(root);
    const open = path.join(root, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    await expect(ensurePrivateDir(open)).rejects.toMatchObject({ code: 'EUNSAFE', message: `${open}: is writable by others (mode 0777); make it private (chmod go-w)` });
    await expect(ensurePrivateDir(path.join(open, 'cache'))).rejects.toMatchObject({ code: 'EUNSAFE', message: expect.stringContaining(`its parent ${open} is writable by others`) });
    await chmod(open, 0o1777); // as /tmp is
    await ensurePrivateDir(path.join(open, 'cache'));
  });

  const writers: [string, (file: string, data: string) => Promise<void>][] = [
    ['writePrivateFile', writePrivateFile],
    ['writeSmallPrivateFileSync', async (file, data) => writeSmallPrivateFileSync(file, data)],
  ];

  it.each(writers)('%s writes a file whole without following a link planted at its name, and reads none through one', async (_name, write) => {
    const root = await tempDir();
    dirs.push(root);
    const victim = path.join(root, 'victim');
    await writeFile(victim, 'precious\n');
    const file = path.join(root, 'x.pid');
    await symlink(victim, file);
    expect(await readPrivateFile(file)).toBeUndefined();
    await write(file, '42\n');
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect((await lstat(file)).isFile()).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readPrivateFile(file)).toBe('42\n');
    await expect(readlink(file)).rejects.toMatchObject({ code: 'EINVAL' });
    // Written again: replaced whole.
    await write(file, '4242\n');
    expect(await readPrivateFile(file)).toBe('4242\n');
  });

  it.each(writers)('%s fails naming the file where it cannot write, and leaves no temporary behind', async (_name, write) => {
    const root = await tempDir();
    dirs.push(root);
    const dir = path.join(root, 'd');
    await mkdir(dir);
    // Its name taken by a directory: the temporary is written, the rename fails.
    const file = path.join(dir, 'x.pid');
    await mkdir(file);
    await expect(write(file, '42\n')).rejects.toMatchObject({ code: 'EIO', object: file });
    expect(await readdir(dir)).toEqual(['x.pid']);
    await expect(write(path.join(root, 'missing', 'x.pid'), '42\n')).rejects.toMatchObject({ code: 'EIO' });
  });
});

describe.skipIf(skipUnlessRoot())('cache directory of another user', () => {
  it('is refused to root: its owner could plant links where root writes', async () => {
    const root = await tempDir();
    try {
      const theirs = path.join(root, 'theirs');
      await mkdir(theirs, { mode: 0o700 });
      await chown(theirs, 65534, 65534);
      await expect(ensurePrivateDir(theirs)).rejects.toMatchObject({ code: 'EUNSAFE', message: expect.stringContaining('is owned by uid 65534, not by this user (uid 0)') });
      await expect(ensurePrivateDir(path.join(theirs, 'mounts'))).rejects.toMatchObject({ code: 'EUNSAFE', message: expect.stringContaining(`its parent ${theirs} is owned by uid 65534`) });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
