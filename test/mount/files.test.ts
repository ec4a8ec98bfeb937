import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/cli/commands/mount.js';
import { daemonPid, escapeMountpoint, mountFiles, pidFileText, processStartTime } from '../../src/mount/files.js';

describe('mount files', () => {
  it('names each mountpoint by one file name, without collisions or a leading dash', () => {
    expect(escapeMountpoint('/mnt/app')).toBe('mnt-app');
    expect(escapeMountpoint('/mnt/a-b')).not.toBe(escapeMountpoint('/mnt/a/b'));
    expect(escapeMountpoint('/mnt/with space')).toBe('mnt-with%20space');
    expect(escapeMountpoint('/mnt/app/')).toBe(escapeMountpoint('/mnt/app'));
    expect(escapeMountpoint('/-x')).toBe('%2dx');
    expect(escapeMountpoint('/')).toBe('%2f');
    expect(mountFiles('/c', '/mnt/app')).toEqual({ dir: '/c/mounts', pid: '/c/mounts/mnt-app.pid' });
  });

  it('trusts a pid file only for the very process it recorded (pid and start time), serving that mountpoint', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'clip-mount-files-'));
    try {
      const files = mountFiles(cache, '/mnt/x');
      await mkdir(files.dir);
      expect(await daemonPid(files, '/mnt/x')).toBeUndefined();
      await writeFile(files.pid, pidFileText('/mnt/x'));
      expect(await daemonPid(files, '/mnt/x')).toBe(process.pid);
      expect(await daemonPid(files, '/mnt/y')).toBeUndefined();
      await writeFile(files.pid, pidFileText('/mnt/x', 2 ** 22 + 1)); // above pid_max: no such process
      expect(await daemonPid(files, '/mnt/x')).toBeUndefined();
      // A live process that is not the one recorded: a reused pid, or a file from an older clip.
      const start = processStartTime(process.pid)!;
      expect(start).toMatch(/^\d+$/);
      await writeFile(files.pid, pidFileText('/mnt/x', process.pid, String(Number(start) + 1)));
      expect(await daemonPid(files, '/mnt/x')).toBeUndefined();
      await writeFile(files.pid, `${process.pid}\n/mnt/x\n`);
      expect(await daemonPid(files, '/mnt/x')).toBeUndefined();
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('parses durations', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1.5')).toBe(1500);
    expect(() => parseDuration('soon')).toThrow(/not a duration/);
    expect(() => parseDuration('0s')).toThrow(/positive/);
  });
});
