/**
 * `clip run` for real: runc, the FUSE image mount and the overlay, as root, on images built from
 * this machine's programs (test/run/image.ts): the image config applied, exit statuses, isolation
 * of writes between containers over one shared image mount, volumes, networks, signals, and
 * nothing left behind, even by a SIGKILLed `clip run`.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { skipUnlessRoot } from '../support/env.js';
import { run } from '../fuse/tools.js';
import { buildRunImages, SECRET, type RunImages } from './image.js';
import { clip, MAIN, mountsUnder, NOTHING_LEFT, runcContainers, runState, startClip } from './helpers.js';

// Each test runs up to six `clip run`s, each a node process, a mount and runc: seconds apiece on a
// loaded machine, where 60 s a test (vitest.config) ran out (load 30: six tests timed out).
describe.skipIf(skipUnlessRoot())('clip run', { timeout: 180_000 }, () => {
  let tmp: string;
  let cache: string;
  let images: RunImages;
  // No linger in these tests: each run's end is checked to leave nothing (the linger has its own test).
  const runArgs = (image: string, ...rest: string[]): string[] => ['run', image, '--cache-dir', cache, '--linger', '0', ...rest];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-run-'));
    cache = join(tmp, 'cache');
    images = await buildRunImages(join(tmp, 'layout'));
  });
  afterAll(async () => {
    if (!tmp) return;
    await clip(['run', '--cleanup', '--cache-dir', cache]).catch(() => undefined);
    for (const m of mountsUnder(tmp).reverse()) await run('umount', ['-l', m.mountPoint]);
    await rm(tmp, { recursive: true, force: true });
  });

  it("runs the image's Entrypoint and Cmd as its User, in its WorkingDir, with its Env; leaves nothing behind", async () => {
    const r = await clip(runArgs(images.app));
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.stdout).toBe('greet: hello from /srv/data as app\n');
    expect(r.code).toBe(0);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('gives the command after -- in place of Cmd, the environment the image sets, and HOME from its passwd', async () => {
    const r = await clip(runArgs(images.app, '--', 'echo "$GREETING $LANG $HOME"; pwd; id'));
    expect(r.stdout).toBe('hello C.UTF-8 /home/app\n/srv/data\nuid=1000(app) gid=1000(app) groups=1000(app),50(staff)\n');
    expect(r.code).toBe(0);
  });

  it("attaches stdin, stdout and stderr", async () => {
    const r = await clip(runArgs(images.bare, '--', '/bin/sh', '-c', 'cat; echo to-stderr >&2'), { stdin: 'from stdin\n' });
    expect(r.stdout).toBe('from stdin\n');
    expect(r.stderr).toBe('to-stderr\n');
    expect(r.code).toBe(0);
  });

  it('propagates the exit status', async () => {
    expect((await clip(runArgs(images.app, '--', 'exit 7'))).code).toBe(7);
    expect((await clip(runArgs(images.bare, '--', '/bin/false'))).code).toBe(1);
  });

  it('overrides with --env, --workdir, --user (name, uid:gid, user:group) and --entrypoint', async () => {
    const r = await clip(runArgs(images.app, '-e', 'GREETING=hi', '-e', 'EXTRA=1', '-w', '/var/new/dir', '-u', 'root', '--', 'echo "$GREETING $EXTRA"; pwd; id -u'));
    expect(r.stdout).toBe('hi 1\n/var/new/dir\n0\n');
    expect((await clip(runArgs(images.app, '-u', '1000:50', '--', 'id'))).stdout).toBe('uid=1000(app) gid=50(staff) groups=50(staff)\n');
    expect((await clip(runArgs(images.app, '-u', 'app:staff', '--', 'id -g'))).stdout).toBe('50\n');
    // A uid the image does not know: group 0, as Docker does.
    expect((await clip(runArgs(images.app, '-u', '4242', '--', 'id -u; id -g'))).stdout).toBe('4242\n0\n');
    const ep = await clip(runArgs(images.app, '--entrypoint', '/usr/bin/id', '--', '-un'));
    expect(ep.stdout).toBe('app\n');
  });

  it('a bare image (no config) runs as root in /, with the default PATH', async () => {
    const r = await clip(runArgs(images.bare, '--', '/bin/sh', '-c', 'id -u; pwd; echo $PATH'));
    expect(r.stdout).toBe('0\n/\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  });

  it('a non-root User reads and writes what the image gives it, through the overlay on the FUSE mount, and nothing else', async () => {
    const script = [
      'cat /home/app/secret',
      'echo note > /home/app/note && cat /home/app/note',
      'echo more >> /srv/data/hello && cat /srv/data/hello',
      'ls /home/app | sort | tr "\\n" " "; echo',
      'cat /root 2>/dev/null || echo "no root for app"',
      'touch /etc/forbidden 2>/dev/null || echo "no /etc for app"',
    ].join('; ');
    const r = await clip(runArgs(images.app, '--', script));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${SECRET}note\nhello from the image\nmore\nnote secret \nno root for app\nno /etc for app\n`);
    expect(r.code).toBe(0);
    // Another user is kept out of the app user's files by the image's modes.
    const other = await clip(runArgs(images.app, '-u', 'nobody', '--', 'cat /home/app/secret'));
    expect(other.stderr).toMatch(/Permission denied/);
    expect(other.code).toBe(1);
  });

  it('a non-root User in a read-only container: the FUSE mount is the top of the overlay, its root given its real mode (docs/run.md)', async () => {
    // Alone on a fresh image mount, so that the overlay is made on a root inode nobody has asked about yet.
    expect(mountsUnder(join(cache, 'run'))).toEqual([]);
    const r = await clip(runArgs(images.app, '--read-only', '--', 'id -un; cat /home/app/secret; ls /srv; touch /srv/data/x 2>/dev/null || echo read-only'));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`app\n${SECRET}data\ngreet.sh\nread-only\n`);
    expect(r.code).toBe(0);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('two containers of one image share one image mount, and not their writes; the last one out unmounts it', async () => {
    const sync = join(tmp, 'sync');
    await mkdir(sync, { recursive: true });
    const script = (name: string): string =>
      `echo ${name} > /srv/data/mark-${name}; echo ${name} > /tmp/${name}; echo ready-${name}; while [ ! -e /sync/go ]; do sleep 0.1; done; echo $(ls /srv/data) / $(ls /tmp)`;
    const a = startClip(runArgs(images.app, '-v', `${sync}:/sync`, '--', script('a')));
    const b = startClip(runArgs(images.app, '-v', `${sync}:/sync`, '--', script('b')));
    await Promise.all([a.waitFor('ready-a'), b.waitFor('ready-b')]);
    const mounts = mountsUnder(join(cache, 'run'));
    expect(mounts.filter((m) => m.fsType === 'fuse.clip')).toHaveLength(1);
    expect(mounts.filter((m) => m.fsType === 'overlay')).toHaveLength(2);
    const [digestDir] = await readdir(join(cache, 'run', 'images'));
    expect(await readdir(join(cache, 'run', 'images', digestDir!, 'refs'))).toHaveLength(2);
    await writeFile(join(sync, 'go'), '');
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    expect(ra.stdout).toBe('ready-a\nhello mark-a / a\n');
    expect(rb.stdout).toBe('ready-b\nhello mark-b / b\n');
    expect([ra.code, rb.code]).toEqual([0, 0]);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
    await rm(sync, { recursive: true });
  });

  it('binds a volume read-write or read-only', async () => {
    const vol = join(tmp, 'vol');
    await mkdir(vol, { recursive: true });
    await writeFile(join(vol, 'in'), 'from the host\n');
    const r = await clip(runArgs(images.bare, '-v', `${vol}:/data`, '-v', `${vol}:/ro:ro`, '--', '/bin/sh', '-c', 'cat /data/in; echo out > /data/out; touch /ro/x 2>/dev/null || echo read-only'));
    expect(r.stdout).toBe('from the host\nread-only\n');
    expect(await readFile(join(vol, 'out'), 'utf8')).toBe('out\n');
    const missing = await clip(runArgs(images.bare, '-v', `${tmp}/no-such-dir:/data`, '--', 'true'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no-such-dir: volume source does not exist/);
  });

  it('--network none gives only a loopback interface; --network host the machine\'s', async () => {
    const ifaces = (text: string): string[] => text.split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean).sort();
    const none = await clip(runArgs(images.bare, '--network', 'none', '--', '/bin/cat', '/proc/net/dev'));
    expect(ifaces(none.stdout)).toEqual(['lo']);
    const host = await clip(runArgs(images.bare, '--network', 'host', '--', '/bin/cat', '/proc/net/dev'));
    expect(ifaces(host.stdout)).toEqual(ifaces(await readFile('/proc/net/dev', 'utf8')));
  });

  it('forwards SIGTERM and SIGINT to the container; a container killed by a signal exits 128+n', async () => {
    for (const [signal, code] of [['TERM', 42], ['INT', 43]] as const) {
      const trapping = startClip(runArgs(images.bare, '--', '/bin/sh', '-c', `trap "echo got ${signal}; exit ${code}" ${signal}; echo ready; while :; do sleep 0.1; done`));
      await trapping.waitFor('ready');
      trapping.proc.kill(`SIG${signal}`);
      const r = await trapping.exited;
      expect(r.stdout).toBe(`ready\ngot ${signal}\n`);
      expect(r.code).toBe(code);
    }

    const sleeping = startClip(runArgs(images.bare, '--', '/bin/sh', '-c', 'echo ready; exec sleep 100'));
    await sleeping.waitFor('ready');
    const [id] = await runcContainers(cache);
    expect((await run('runc', ['--root', join(cache, 'run', 'runc'), 'kill', id!, 'KILL'])).code).toBe(0);
    expect((await sleeping.exited).code).toBe(128 + 9);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('a SIGKILLed clip run leaves nothing once the next clip run, or clip run --cleanup, has run', async () => {
    const killed = startClip(runArgs(images.app, '--', 'echo ready; exec sleep 1000'));
    await killed.waitFor('ready');
    killed.proc.kill('SIGKILL');
    await killed.exited;
    const left = await runState(cache);
    expect(left.runc).toHaveLength(1);
    // The container's own process (its shell exec'd sleep): by pid, as another test's or another
    // run's `sleep 1000` elsewhere on the machine is not this container.
    const state = await run('runc', ['--root', join(cache, 'run', 'runc'), 'state', left.runc[0]!]);
    const containerPid = (JSON.parse(state.stdout) as { pid: number }).pid;
    await vi.waitUntil(() => sleeping(containerPid), { timeout: 30_000 }); // it printed ready before its exec
    expect(left.mounts).toHaveLength(2); // the image mount and the overlay
    const next = await clip(runArgs(images.bare, '--', 'true'));
    expect(next.code).toBe(0);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
    // The container itself is gone too.
    expect(sleeping(containerPid)).toBe(false);

    const again = startClip(runArgs(images.app, '--', 'echo ready; exec sleep 1000'));
    await again.waitFor('ready');
    again.proc.kill('SIGKILL');
    await again.exited;
    const cleanup = await clip(['run', '--cleanup', '--cache-dir', cache]);
    expect(cleanup.stdout).toBe('clip: cleaned 1 container(s), 0 runc state(s), 1 image mount(s)\n');
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('--linger keeps the image mounted after its last container for the next run of it, which joins it; then the mount stops by itself', async () => {
    // 20 s: the next clip run (a node process) must reach the mount within the linger; under load
    // that took longer than the 3 s this had, and the second run mounted the image afresh.
    const lingering = ['run', images.app, '--cache-dir', cache, '--linger', '20s', '--log-level', 'debug', '--log-format', 'json'];
    const first = await clip([...lingering, '--', 'echo first']);
    expect(first.stdout).toBe('first\n');
    expect(first.code).toBe(0);
    // The container is gone; the image mount stays, held by the linger alone.
    const kept = await runState(cache);
    expect({ ...kept, images: [], mounts: kept.mounts.map((m) => m.split(' ')[0]) }).toEqual({ ...NOTHING_LEFT, mounts: ['fuse.clip'] });
    expect(kept.images).toHaveLength(1);
    expect(await readdir(join(cache, 'run', 'images', kept.images[0]!, 'refs'))).toEqual(['linger']);
    // The next run of the same name joins the serving mount, and takes the image from what the
    // first run recorded: no index loaded, no second mount.
    const second = await clip([...lingering, '--', 'echo second']);
    expect(second.stdout).toBe('second\n');
    expect(second.stderr).toMatch(/run: the image is mounted already/);
    expect(second.stderr).toMatch(/run: joining the image mount/);
    expect(second.stderr).not.toMatch(/run: image mounted/);
    // The reaper stops it once the (renewed) linger is over, with no clip command run meanwhile.
    for (const until = Date.now() + 90_000; Date.now() < until && (await readdir(join(cache, 'run', 'images'))).length > 0;) await new Promise((r) => setTimeout(r, 100));
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('one reaper serves the lingers of every image on the node, and ends with the last of them', async () => {
    // Two images with different lingers: the later linger is written first, so the reaper must
    // also see one that ends sooner than what it waits for.
    for (const [image, linger] of [[images.bare, '15s'], [images.app, '3s']] as const) {
      const r = await clip(['run', image, '--cache-dir', cache, '--linger', linger, '--', 'true']);
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await runState(cache)).images).toHaveLength(2);
    const reapers = async (): Promise<string[]> => (await run('pgrep', ['-f', `linger-reaper\\S* ${cache}$`])).stdout.split('\n').filter(Boolean);
    expect(await reapers()).toHaveLength(1);
    const waitFor = async (done: () => Promise<boolean>): Promise<void> => {
      for (const until = Date.now() + 60_000; Date.now() < until && !(await done());) await new Promise((r) => setTimeout(r, 100));
    };
    // The 3 s linger ends first, while the reaper still runs for the other.
    await waitFor(async () => (await runState(cache)).images.length < 2);
    expect((await runState(cache)).images).toHaveLength(1);
    expect(await reapers()).toHaveLength(1);
    await waitFor(async () => (await runState(cache)).images.length === 0 && (await reapers()).length === 0);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
    expect(await reapers()).toEqual([]);
  });

  it('a lingering image mount: clip unmount stops it and the next run mounts the image again; clip profile and --cleanup stop a linger', async () => {
    expect((await clip(['run', images.app, '--cache-dir', cache, '--', 'true'])).code).toBe(0);
    const [digest] = (await runState(cache)).images;
    const mountpoint = join(cache, 'run', 'images', digest!, 'rootfs');
    expect(mountsUnder(mountpoint).map((m) => m.fsType)).toEqual(['fuse.clip']);
    const un = await clip(['unmount', mountpoint, '--cache-dir', cache]);
    expect(un.code, un.stderr).toBe(0);
    expect(mountsUnder(mountpoint)).toEqual([]);
    const again = await clip(['run', images.app, '--cache-dir', cache, '--log-level', 'debug', '--log-format', 'json', '--', 'cat /srv/data/hello']);
    expect(again.stdout).toBe('hello from the image\n');
    expect(again.stderr).toMatch(/run: image mounted/);
    expect(mountsUnder(mountpoint).map((m) => m.fsType)).toEqual(['fuse.clip']);
    // clip profile needs a fresh mount: it stops one kept only by its linger (and its own stops at its end).
    const profiled = await clip(['profile', images.app, '--cache-dir', cache, '--', 'cat /srv/data/hello']);
    expect(profiled.stderr).not.toMatch(/mounted for running containers/);
    expect(profiled.code, profiled.stderr).toBe(0);
    expect(mountsUnder(mountpoint)).toEqual([]);
    expect((await clip(['run', images.app, '--cache-dir', cache, '--', 'true'])).code).toBe(0);
    const cleanup = await clip(['run', '--cleanup', '--cache-dir', cache]);
    expect(cleanup.stdout).toBe('clip: cleaned 0 container(s), 0 runc state(s), 1 image mount(s)\n');
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('--keep keeps the writable layer', async () => {
    const r = await clip(runArgs(images.bare, '--keep', '--', '/bin/sh', '-c', 'echo kept > /kept-file'));
    const upper = /kept the writable layer of container \S+: (\S+)/.exec(r.stderr)?.[1];
    expect(upper).toBeDefined();
    expect(await readFile(join(upper!, 'kept-file'), 'utf8')).toBe('kept\n');
    const state = await runState(cache);
    expect(state.mounts).toEqual([]);
    expect(state.containers).toHaveLength(1);
    // A kept container is not the sweep's to remove.
    await clip(['run', '--cleanup', '--cache-dir', cache]);
    expect((await runState(cache)).containers).toHaveLength(1);
    await rm(join(cache, 'run', 'containers', state.containers[0]!), { recursive: true });
  });

  it('errors name the image: an unknown user, a command that is not there', async () => {
    const user = await clip(runArgs(images.app, '-u', 'ghost', '--', 'true'));
    expect(user.code).toBe(1);
    expect(user.stderr).toMatch(/app: user "ghost" is not in the image's \/etc\/passwd/);
    const missing = await clip(runArgs(images.bare, '--', '/no/such/program'));
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/bare \(container clip-[0-9a-f]{12}\): the container did not start \(exit 127\)/);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  });

  it('-t gives the container a terminal', async () => {
    const cmd = [process.execPath, '--import', 'tsx', MAIN, ...runArgs(images.bare, '-t', '--', '/bin/sh', '-c', 'tty; stty size')]
      .map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const r = await run('script', ['-qec', `stty cols 77 rows 22; ${cmd}`, '/dev/null'], { timeoutMs: 60_000 });
    expect(r.stdout.replace(/\r/g, '')).toMatch(/^\/dev\/pts\/0\n22 77\n/m);
    expect(r.code).toBe(0);
  });
});

/** Whether `pid` is a live process running sleep (a zombie's or a gone process's cmdline is empty). */
function sleeping(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('sleep');
  } catch {
    return false;
  }
}
