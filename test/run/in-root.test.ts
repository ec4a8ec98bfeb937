/**
 * Paths inside a container's root are resolved as the container sees them: a link in an image can
 * never make clip (root on the host) read or create a file outside the root.
 */
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirInRoot, readInRoot, resolveInRoot } from '../../src/run/in-root.js';
import { resolveUser } from '../../src/run/image-config.js';

describe('paths inside a container root', () => {
  let tmp: string;
  let root: string;
  let outside: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-inroot-'));
    root = join(tmp, 'root');
    outside = join(tmp, 'outside');
    await mkdir(join(root, 'etc'), { recursive: true });
    await mkdir(join(root, 'real'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(outside, 'passwd'), 'root:x:0:0:host:/:/bin/sh\nhostonly:x:7:7::/:/bin/sh\n');
    await writeFile(join(root, 'real', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nimg:x:5:6::/home/img:/bin/sh\n');
    // Absolute and relative links that would leave the root on the host.
    await symlink(join(outside, 'passwd'), join(root, 'etc', 'passwd'));
    await symlink('../../../../../../outside/passwd', join(root, 'etc', 'group'));
    await symlink('/real', join(root, 'abs-dir'));
    await symlink(outside, join(root, 'escape'));
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  it('follows an absolute link from the root, never the host', async () => {
    // /etc/passwd -> <tmp>/outside/passwd: inside the root that path does not exist.
    expect(await readInRoot(root, '/etc/passwd')).toBeUndefined();
    expect(await readInRoot(root, '/etc/group')).toBeUndefined();
    expect(await readInRoot(root, '/abs-dir/passwd')).toMatch(/^root:x:0:0:root/);
    expect((await resolveInRoot(root, '/escape/passwd')).host.startsWith(`${root}/`)).toBe(true);
  });

  it('resolves users from the image, not from a file a link points at on the host', async () => {
    await expect(resolveUser('hostonly', root, 'img')).rejects.toThrow(/img: user "hostonly" is not in the image's \/etc\/passwd/);
    expect(await resolveUser('7', root, 'img')).toEqual({ uid: 7, gid: 0, additionalGids: [] });
  });

  it('makes a working directory inside the root, through links resolved inside it', async () => {
    await mkdirInRoot(root, '/escape/made/here');
    expect(await readdir(outside)).toEqual(['passwd']);
    await mkdirInRoot(root, '/abs-dir/wd');
    expect(await readdir(join(root, 'real'))).toEqual(['passwd', 'wd']);
  });
});
