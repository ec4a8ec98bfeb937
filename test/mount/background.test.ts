/**
 * The background daemon and what it leaves for others to see: a shared cache's password is in
 * neither its command line nor its environment; a second mount of the same mountpoint fails
 * without touching the running daemon's log, and failed mounts leave no log behind; a cache
 * directory others can write, or one inside the mountpoint, is refused before anything is mounted.
 */
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mountFiles } from '../../src/mount/files.js';
import { statusFile } from '../../src/mount/status.js';
import { serverFiles } from '../../src/server/paths.js';
import { skipUnlessRoot } from '../support/env.js';
import { pushFixture } from '../support/fixtures/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run } from '../fuse/tools.js';
import { cleanScratch, clip, daemonPidOf, fuseMounted, holderPidOf, scratch } from './helpers.js';

const SECRET = 'hunter2-clip-secret';

describe.skipIf(skipUnlessRoot())('clip mount --background: what it shows, what it leaves', () => {
  let registry: TestRegistry;
  let redis: RedisServer;
  let ref: string;
  let mnt: string;
  let cache: string;

  beforeAll(async () => {
    [registry, redis] = await Promise.all([startRegistry(), startRedis({ password: SECRET })]);
    ref = await pushFixture('basic', registry.host);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([registry?.stop(), redis?.stop()]);
  });
  beforeEach(async () => {
    ({ mnt, cache } = await scratch('clip-bg'));
  });
  afterEach(() => cleanScratch({ mnt, cache }));

  const pidOf = (): number => daemonPidOf(cache, mnt);

  it('keeps the shared cache password out of /proc/PID/cmdline and environ, and uses it', async () => {
    const r = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--remote-cache', redis.url]);
    expect(r.stderr).toContain("served by the node's clip server");
    expect(r.code).toBe(0);
    for (const pid of [pidOf(), holderPidOf(cache)]) {
      for (const file of ['cmdline', 'environ']) expect(readFileSync(`/proc/${pid}/${file}`).toString('latin1')).not.toContain(SECRET);
    }
    expect(readFileSync(serverFiles(cache).log, 'utf8')).not.toContain(SECRET);
    expect((await run('cat', [join(mnt, 'opt/app/config.json')])).stdout).toBe('{"name":"basic"}\n');
    // What was read from the registry reaches the shared cache: the daemon authenticated.
    let keys = 0;
    for (let i = 0; i < 300 && keys === 0; i++) {
      keys = Number(await redis.cli('DBSIZE'));
      if (keys === 0) await new Promise((res) => setTimeout(res, 100));
    }
    expect(keys).toBeGreaterThan(0);
  });

  it('a second mount of a served mountpoint fails clearly and leaves the running server and its log alone', async () => {
    expect((await clip(['mount', ref, mnt, '--cache-dir', cache, '--background'])).code).toBe(0);
    const files = mountFiles(cache, mnt);
    const pid = pidOf();
    const log = serverFiles(cache).log;
    const logBefore = readFileSync(log, 'utf8');
    const second = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`clip: ${mnt}: already mounted by clip (pid ${pid}); clip unmount it first\n`);
    expect(readFileSync(log, 'utf8')).toBe(logBefore);
    expect(readdirSync(files.dir).sort()).toEqual([files.pid, statusFile(files)].map((f) => f.slice(files.dir.length + 1)).sort());
    expect((await run('cat', [join(mnt, 'etc/hostname')])).stdout).toBe('clip-basic-2\n');
  });

  it('a failed mount leaves no log file behind', async () => {
    const missing = join(mnt, 'nope');
    const r = await clip(['mount', ref, missing, '--cache-dir', cache, '--background']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`clip: ${missing}: mountpoint does not exist\n`); // found before any indexing
    expect(existsSync(join(cache, 'mounts')) ? readdirSync(join(cache, 'mounts')) : []).toEqual([]);
  });

  it('refuses a cache directory others can write, and follows no link planted in it', async () => {
    const victim = join(cache, 'victim');
    await writeFile(victim, 'precious\n');
    const shared = join(cache, 'shared');
    await mkdir(join(shared, 'mounts'), { recursive: true });
    await chmod(shared, 0o777);
    const files = mountFiles(shared, mnt);
    const log = serverFiles(shared).log;
    await mkdir(serverFiles(shared).logDir);
    await symlink(victim, log);
    await symlink(victim, files.pid);
    for (const extra of [['--background'], []]) {
      const r = await clip(['mount', ref, mnt, '--cache-dir', shared, ...extra], { timeoutMs: 60_000 });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`clip: ${shared}: is writable by others (mode 0777); make it private (chmod go-w)\n`);
      expect(fuseMounted(mnt)).toBe(false);
    }
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    // Made private by its owner, the links left in it are replaced, never followed.
    await chmod(shared, 0o700);
    expect((await clip(['mount', ref, mnt, '--cache-dir', shared, '--background'])).code).toBe(0);
    expect(lstatSync(log).isFile()).toBe(true);
    expect(lstatSync(files.pid).isFile()).toBe(true);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect((await clip(['unmount', mnt, '--cache-dir', shared])).code).toBe(0);
  });

  it('refuses a cache directory inside the mountpoint before mounting anything, in the background or not', async () => {
    const inside = join(mnt, 'cache');
    await mkdir(inside);
    for (const extra of [['--background'], []]) {
      const r = await clip(['mount', ref, mnt, '--cache-dir', inside, ...extra], { timeoutMs: 30_000 });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`clip: ${mnt}: the cache directory ${inside} is inside the mountpoint, which the mount would hide; choose another --cache-dir\n`);
      expect(fuseMounted(mnt)).toBe(false);
      expect(existsSync(join(inside, 'indexes'))).toBe(false);
    }
  });
});
