/**
 * `clip mount` and `clip unmount` as real processes against a real registry: foreground and
 * background (nosuid,nodev unless --allow-suid/--allow-dev), pid and log files, SIGTERM, an outside umount, a busy mount, a daemon killed with -9
 * (the next mount cleans the stale mountpoint), and the error without root.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { mountFiles } from '../../src/mount/files.js';
import { serverFiles } from '../../src/server/paths.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { python, run } from '../fuse/tools.js';
import { cleanScratch, clip, clipUntilLine, daemonPidOf, fuseMounted, holderPidOf, killServerAndHolder, scratch, waitUntil } from './helpers.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(skipUnlessRoot())('clip mount / clip unmount', () => {
  let registry: TestRegistry;
  let ref: string;
  let mnt: string;
  let cache: string;

  beforeAll(async () => {
    registry = await startRegistry();
    ref = await pushFixture('basic', registry.host);
  }, 120_000);
  afterAll(async () => {
    await registry?.stop();
  });
  beforeEach(async () => {
    ({ mnt, cache } = await scratch('clip-mount'));
  });
  afterEach(() => cleanScratch({ mnt, cache }));

  const pidOf = (): number => daemonPidOf(cache, mnt);

  it('--background indexes, returns once ready, served by the node server with pid and log files; unmount ends it', async () => {
    const r = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    expect(r.stderr).toContain("served by the node's clip server");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^clip: mounted .*fixtures/basic:latest on ${mnt} \\(\\d+ entries, index from the cache\\)\n$`));
    expect(readdirSync(join(cache, 'indexes')).filter((n) => n.endsWith('.clip'))).toHaveLength(1);
    const files = mountFiles(cache, mnt);
    const pid = pidOf();
    const holder = holderPidOf(cache);
    expect(alive(pid)).toBe(true);
    expect(alive(holder)).toBe(true);
    expect(r.stderr).toContain(serverFiles(cache).log);
    expect((await run('cat', [join(mnt, 'etc/hostname')])).stdout).toBe('clip-basic-2\n');

    const u = await clip(['unmount', mnt, '--cache-dir', cache]);
    expect(u.stdout).toBe(`clip: ${mnt}: unmounted (clip server pid ${pid})\n`);
    expect(fuseMounted(mnt)).toBe(false);
    expect(existsSync(files.pid)).toBe(false);
    // With no mount left, the server and its holder end by themselves.
    expect(await waitUntil(() => !alive(pid) && !alive(holder), 20_000)).toBe(true);
    expect(readFileSync(serverFiles(cache).log, 'utf8')).toContain('holder: exiting');
  });

  it('in the foreground prints one line when ready and unmounts cleanly on SIGTERM; an index file mounts too', async () => {
    const first = await clipUntilLine(['mount', ref, mnt, '--cache-dir', cache]);
    expect(first.line).toMatch(/^clip: mounted .* \(\d+ entries, indexed now\)$/);
    expect((await run('cat', [join(mnt, 'opt/app/config.json')])).stdout).toBe('{"name":"basic"}\n');
    expect(mountsAt(mnt)[0]!.mountOptions).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    first.proc.kill('SIGTERM');
    const done = await first.exited;
    expect(done.code).toBe(0);
    expect(fuseMounted(mnt)).toBe(false);
    expect(existsSync(mountFiles(cache, mnt).pid)).toBe(false);

    const indexFile = join(cache, 'indexes', readdirSync(join(cache, 'indexes'))[0]!);
    const second = await clipUntilLine(['mount', indexFile, mnt, '--cache-dir', cache, '--allow-suid', '--allow-dev']);
    expect(second.line).toContain(`index ${indexFile}`);
    expect(mountsAt(mnt)[0]!.mountOptions).not.toContain('nosuid');
    expect(mountsAt(mnt)[0]!.mountOptions).not.toContain('nodev');
    expect((await run('cat', [join(mnt, 'etc/hostname')])).stdout).toBe('clip-basic-2\n');
    second.proc.kill('SIGINT');
    expect((await second.exited).code).toBe(0);
    expect(fuseMounted(mnt)).toBe(false);
  });

  it('the daemon exits when someone else unmounts, and a busy mount is still unmounted', async () => {
    await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    const pid = pidOf();
    expect((await run('umount', [mnt])).code).toBe(0);
    expect(await waitUntil(() => !alive(pid), 30_000)).toBe(true);
    expect(existsSync(mountFiles(cache, mnt).pid)).toBe(false);

    await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    const busyPid = pidOf();
    // A process holding a file open (and its cwd) in the mount.
    const holder = spawn('python3', ['-c', 'import sys, time; f = open(sys.argv[1], "rb"); print("open", flush=True); time.sleep(60)', join(mnt, 'etc/passwd')], {
      cwd: join(mnt, 'etc'), stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((r) => holder.stdout.once('data', r));
    try {
      const u = await clip(['unmount', mnt, '--cache-dir', cache, '--timeout', '3s']);
      expect(u.code).toBe(0);
      expect(fuseMounted(mnt)).toBe(false);
      expect(await waitUntil(() => !alive(busyPid), 30_000)).toBe(true);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('after kill -9 of the server the mount goes on; after kill -9 of holder and server it is stale, and the next mount cleans it', async () => {
    await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    const first = pidOf();
    process.kill(first, 'SIGKILL');
    // The holder starts another server on the same descriptor.
    expect(await waitUntil(() => existsSync(mountFiles(cache, mnt).pid) && pidOf() !== first && alive(pidOf()), 20_000)).toBe(true);
    expect((await run('cat', [join(mnt, 'etc/hostname')])).stdout).toBe('clip-basic-2\n');

    const pid = pidOf();
    await killServerAndHolder(cache, mnt);
    // statfs, not stat: the root's attributes, cached by the cat above, would still answer a stat.
    const st = await python('import os, sys\ntry:\n  os.statvfs(sys.argv[1]); print("ok")\nexcept OSError as e:\n  print(e.strerror)', mnt);
    expect(st.stdout.trim()).toBe('Transport endpoint is not connected');

    const again = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    expect(again.code, again.stderr).toBe(0);
    expect(pidOf()).not.toBe(pid);
    expect((await run('cat', [join(mnt, 'etc/hostname')])).stdout).toBe('clip-basic-2\n');
    expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);
    expect(fuseMounted(mnt)).toBe(false);
  });

  it('clip unmount of a stale mount with no server removes it; of nothing, says so', async () => {
    await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    await killServerAndHolder(cache, mnt);
    const u = await clip(['unmount', mnt, '--cache-dir', cache]);
    expect(u.stdout).toContain('removed a stale mount');
    expect(fuseMounted(mnt)).toBe(false);
    const none = await clip(['unmount', mnt, '--cache-dir', cache]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no clip mount here');
  });

  it('--background from a relative oci: path: the server (running from /) finds it; a failure is reported, not hidden', async () => {
    const fx = await fixture('basic');
    const r = await clip(['mount', `oci:${basename(fx.layoutDir)}:latest`, mnt, '--cache-dir', cache, '--background'], { cwd: dirname(fx.layoutDir) });
    expect(r.stderr).toContain("served by the node's clip server");
    expect(r.stdout).toContain(`mounted oci:${fx.layoutDir}:latest on ${mnt}`);
    expect(readlinkSync(`/proc/${pidOf()}/cwd`)).toBe('/');
    expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);

    const missing = await clip(['mount', ref, join(mnt, 'nope'), '--cache-dir', cache, '--background']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(mnt, 'nope')}: mountpoint does not exist`);
  });

  it('without root: a clear error, before any indexing', async () => {
    await chmod(mnt, 0o777);
    const r = await clip(['mount', ref, mnt, '--cache-dir', join(mnt, 'cache')], { uid: 65534 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs root/);
    expect(existsSync(join(mnt, 'cache'))).toBe(false);
  });
});
