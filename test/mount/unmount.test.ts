import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { mountFiles, pidFileText, processStartTime } from '../../src/mount/files.js';
import { unmountMountpoint } from '../../src/mount/unmount.js';
import { skipUnlessRoot } from '../support/env.js';
import { run, startServeChild } from '../fuse/tools.js';

const alive = (pid: number): boolean => processStartTime(pid) !== undefined;

describe.skipIf(skipUnlessRoot())('clip unmount of a mount with no daemon of ours', () => {
  let dir: string;
  let cacheDir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-unmount-'));
    cacheDir = await mkdtemp(join(tmpdir(), 'clip-unmount-cache-'));
  });
  afterEach(async () => {
    if (mountsAt(dir).length > 0) await run('umount', ['-l', dir]);
    await rm(dir, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('aborts a server that does not answer, where umount(8) would wait forever, and removes the mount', async () => {
    const { line, proc } = await startServeChild(dir, 'hang-statfs');
    try {
      expect(line).toBe('ready');
      const started = Date.now();
      expect(await unmountMountpoint(dir, { cacheDir, timeoutMs: 2000 })).toEqual({ how: 'stale' });
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(mountsAt(dir)).toEqual([]);
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('refuses what is not a FUSE filesystem, fusectl included (its type only begins like one)', async () => {
    const fusectl = '/sys/fs/fuse/connections';
    if (mountsAt(fusectl).length === 0) expect((await run('mount', ['-t', 'fusectl', 'fusectl', fusectl])).code).toBe(0);
    await expect(unmountMountpoint(fusectl, { cacheDir })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(mountsAt(fusectl).map((m) => m.fsType)).toContain('fusectl');
    await expect(unmountMountpoint(dir, { cacheDir })).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/no clip mount here/) });
  });

  it('refuses a FUSE mount that is not clip\'s, and leaves it mounted', async () => {
    const { line, proc } = await startServeChild(dir, 'foreign');
    try {
      expect(line).toBe('ready');
      await expect(unmountMountpoint(dir, { cacheDir, timeoutMs: 2000 })).rejects.toMatchObject({
        code: 'EINVAL', message: `${dir}: not a clip mount (a fuse.squashfuse mount of "squashfuse"); clip unmounts only its own: use umount(8)`,
      });
      expect(mountsAt(dir).map((m) => m.fsType)).toEqual(['fuse.squashfuse']);
    } finally {
      await run('umount', [dir]);
      proc.kill('SIGKILL');
    }
  });

  it('signals no process a stale pid file names, node or not, unless it is the very process recorded', async () => {
    const files = mountFiles(cacheDir, dir);
    await mkdir(files.dir, { recursive: true });
    const bystander = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      const pid = bystander.pid!;
      const start = processStartTime(pid)!;
      // A file from before start times were recorded, and one whose process started at another time.
      for (const text of [`${pid}\n${dir}\n`, pidFileText(dir, pid, String(Number(start) - 1))]) {
        await writeFile(files.pid, text);
        await expect(unmountMountpoint(dir, { cacheDir, timeoutMs: 1000 })).rejects.toMatchObject({ message: expect.stringMatching(/no clip mount here/) });
        await new Promise((r) => setTimeout(r, 200));
        expect(alive(pid)).toBe(true);
      }
    } finally {
      bystander.kill('SIGKILL');
    }
  });
});
