import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { unmountMountpoint } from '../../src/mount/unmount.js';
import { skipUnlessRoot } from '../support/env.js';
import { run, startServeChild } from '../fuse/tools.js';

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
      expect(Date.now() - started).toBeLessThan(10_000);
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
});
