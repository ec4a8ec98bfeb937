/**
 * `clip snapshotter` under a real containerd 1.6 (its own instance, root, state and socket in a
 * temporary directory), images in the real docker-registry behind the counting proxy:
 * - an image whose clip index is published is pulled with `ctr-remote images rpull` without a
 *   byte of its layers, and `ctr run` runs a shell and python from it, reading only what they read;
 * - two containers of the image share one image mount and not their writes;
 * - a restart of the snapshotter after kill -9 keeps snapshots and running containers, and mounts
 *   again an image whose mount daemon died;
 * - an image without an index is unpacked by containerd (the overlayfs path) and runs, also when
 *   its first layer is the indexed image's (that layer is then unpacked by the snapshotter);
 * - removing the containers and the images leaves no mount behind.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_SCRIPT, buildDemoImage, planDemo } from '../../src/demo/index.js';
import { DEMO_VERSION, hostPlatform } from '../../src/demo/plan.js';
import { serverFiles } from '../../src/server/paths.js';
import { writeImage, type LayerEntry } from '../../src/oci/build/index.js';
import { openImage } from '../../src/oci/index.js';
import { pushLayout } from '../../src/oci/push.js';
import { parseMountInfo } from '../../src/fuse/mountinfo.js';
import { chainIds, LABEL_CRI_LAYER, LABEL_CRI_REF, LABEL_TARGET, RemoteImages } from '../../src/snapshotter/remote.js';
import { skipUnlessRoot } from '../support/env.js';
import { skopeoInspect } from '../support/tools.js';
import { startFaultProxy, type FaultProxy, type ProxiedRequest } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { clipProcess, MAIN } from '../cli/program.js';
import { startContainerd, startSnapshotterProcess, type SnapshotterProcess, type TestContainerd } from './containerd.js';

const DEMO_DIR = fileURLToPath(new URL('../../.tmp/demo-snapshotter', import.meta.url));

describe.skipIf(skipUnlessRoot())('clip snapshotter under containerd', () => {
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let tmp: string;
  let ctrd: TestContainerd;
  let sn: SnapshotterProcess;
  let indexed: string; // reference of the image with a published index (through the proxy)
  let plain: string; // reference of an image without one
  let shared: string; // an image without one whose first layer is the indexed image's
  let sharedLayers: { digest: string; size: number }[];
  let indexedLayers: { digest: string; size: number }[];
  let plainLayers: { digest: string; size: number }[];
  const socket = (): string => join(tmp, 'clip.sock');
  const startClip = (): Promise<SnapshotterProcess> =>
    startSnapshotterProcess(['--address', socket(), '--root', join(tmp, 'root'), '--cache-dir', join(tmp, 'cache'), '--metrics', '127.0.0.1:0'], join(tmp, 'snapshotter.log'));
  /** The snapshotter's metrics endpoint, scraped now. */
  const scrape = async (): Promise<string> => {
    const port = /metrics on port (\d+)/.exec(sn.stdout)?.[1];
    expect(port, sn.stdout).toBeDefined();
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };
  /** The value of one series, found by its name and labels (in any order). */
  const sample = (text: string, name: string, labels: Record<string, string>): number | undefined => {
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const got = Object.fromEntries([...m[2]!.matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
    }
    return undefined;
  };

  beforeAll(async () => {
    [registry, tmp] = await Promise.all([startRegistry(), mkdtemp(join(tmpdir(), 'clip-snap-'))]);
    proxy = await startFaultProxy(registry.host);
    const demo = await buildDemoImage({ dir: DEMO_DIR });
    await pushLayout(demo.layoutDir, demo.tag, `${registry.host}/snap/indexed:demo`);
    indexedLayers = demo.layers.map((l) => ({ digest: l.digest, size: l.size }));
    indexed = `${proxy.host}/snap/indexed:demo`;
    const pushed = await clipProcess(['index', indexed, '--push', '--cache-dir', join(tmp, 'publisher'), '--no-progress']);
    expect(pushed.code, pushed.stderr).toBe(0);

    // Another image, with no index anywhere: the demo's shell and tools, and a file of its own in
    // its first layer (so that no layer chain is shared with the indexed image).
    const plan = await planDemo();
    const plainLayout = join(tmp, 'plain-layout');
    const built = await writeImage(plainLayout, {
      platform: hostPlatform(), tag: 'plain',
      config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'] },
      layers: [
        { entries: [...(plan.spec.layers[0]!.entries as LayerEntry[]), { type: 'file', path: 'etc/plain-image', content: 'no index here\n', mode: 0o644, mtime: { sec: 1_700_000_000, nsec: 0 } }] },
        { entries: [{ type: 'file', path: 'srv/hello', content: 'hello from the plain image\n', mode: 0o644, mtime: { sec: 1_700_000_000, nsec: 0 } }] },
      ],
    });
    plainLayers = built.layers.map((l) => ({ digest: l.descriptor.digest, size: l.descriptor.size }));
    await pushLayout(plainLayout, 'plain', `${registry.host}/snap/plain:plain`);
    plain = `${proxy.host}/snap/plain:plain`;

    // The indexed image's first layer (byte for byte) and one of its own, with no index.
    const sharedLayout = join(tmp, 'shared-layout');
    const sharedBuilt = await writeImage(sharedLayout, {
      platform: hostPlatform(), tag: 'shared',
      config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'] },
      layers: [plan.spec.layers[0]!, { entries: [{ type: 'file', path: 'srv/shared', content: 'on the indexed image\'s base\n', mode: 0o644, mtime: { sec: 1_700_000_000, nsec: 0 } }] }],
    });
    sharedLayers = sharedBuilt.layers.map((l) => ({ digest: l.descriptor.digest, size: l.descriptor.size }));
    expect(sharedLayers[0]!.digest).toBe(indexedLayers[0]!.digest);
    await pushLayout(sharedLayout, 'shared', `${registry.host}/snap/shared:shared`);
    shared = `${proxy.host}/snap/shared:shared`;

    sn = await startClip();
    ctrd = await startContainerd(socket());
  }, 600_000);

  afterAll(async () => {
    if (ctrd) {
      for (const id of ['c-run', 'c-py', 'c-metrics', 'c-a', 'c-b', 'c-plain', 'c-shared']) {
        await ctrd.ctr('tasks', 'kill', '-s', 'SIGKILL', id).catch(() => undefined);
        await sleep(200);
        await ctrd.ctr('tasks', 'rm', '-f', id).catch(() => undefined);
        await ctrd.ctr('containers', 'rm', id).catch(() => undefined);
      }
      await ctrd.stop();
    }
    await sn?.stop();
    // Image mounts left by a failed test: unmounted through clip, as the snapshotter would.
    for (const mp of imageMounts()) await clipProcess(['unmount', mp, '--cache-dir', join(tmp, 'cache')], {}, { entry: MAIN });
    await proxy?.stop();
    await registry?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }, 120_000);

  const imageMounts = (): string[] =>
    parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))
      .filter((m) => m.fsType === 'fuse.clip' && m.mountPoint.startsWith(join(tmp, 'root', 'images')))
      .map((m) => m.mountPoint);
  const blobGets = (digest: string): ProxiedRequest[] => proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`));
  const snapshots = async (): Promise<string> => ctrd.ctr('snapshots', '--snapshotter', 'clip', 'ls');
  /** containerd redials a proxy plugin with backoff (at most 3 s apart): until then its calls fail. */
  const waitForSnapshotter = async (): Promise<string> => {
    for (let i = 0; ; i++) {
      try {
        return await snapshots();
      } catch (err) {
        if (i >= 100) throw err;
        await sleep(200);
      }
    }
  };
  const waitStopped = async (id: string): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const line = (await ctrd.ctr('tasks', 'ls')).split('\n').find((l) => l.startsWith(`${id} `));
      if (!line || line.includes('STOPPED')) return;
      await sleep(100);
    }
  };

  it('the node\'s clip server is up as soon as the snapshotter serves, before any container', async () => {
    const { askServer } = await import('../../src/server/client.js');
    const { liveHolder } = await import('../../src/server/paths.js');
    expect(liveHolder(serverFiles(join(tmp, 'cache')).lock)).toBeGreaterThan(0);
    const reply = await askServer(join(tmp, 'cache'), { op: 'status' });
    expect(reply).toMatchObject({ ok: true, op: 'status', mounts: [] });
    // It stays up past the 5 s a server without mounts waits before it ends: the snapshotter holds it.
    const pid = (reply as { pid: number }).pid;
    await sleep(7000);
    expect(await askServer(join(tmp, 'cache'), { op: 'status' })).toMatchObject({ ok: true, pid });
  }, 60_000);

  it('ctr-remote rpull of an image with a published index fetches no layer; ctr run runs a shell from it', async () => {
    proxy.requests.length = 0;
    await ctrd.ctrRemote('images', 'rpull', '--plain-http', '--snapshotter', 'clip', indexed);
    // The manifest, the config, the referrers and the index artifact: not one layer byte.
    for (const l of indexedLayers) expect(blobGets(l.digest)).toEqual([]);
    const listed = (await snapshots()).trim().split('\n').slice(1);
    expect(listed).toHaveLength(indexedLayers.length);
    for (const line of listed) expect(line).toMatch(/Committed\s*$/);
    // The image is mounted at pull time, once its last layer is committed (not awaited by the pull):
    // `ctr run` then finds it serving.
    // (Up to 60 s: a mount under load took seconds; 200 looks 50 ms apart were the whole budget.)
    for (const until = Date.now() + 60_000; Date.now() < until && !/snapshotter: image mounted/.test(await sn.log());) await sleep(50);
    expect(imageMounts()).toHaveLength(1);
    const mountedAt = (await sn.log()).split('\n').filter((l) => l.includes('snapshotter: image mounted')).length;
    expect(mountedAt).toBe(1);

    proxy.requests.length = 0;
    const out = await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', indexed, 'c-run', '/bin/sh', '-c', 'echo hello; ls /app; sha256sum /app/main.py; cat /etc/clip-demo-release');
    expect(out).toBe(`hello\nREADME\nconfig.json\nmain.py\n${createHash('sha256').update(APP_SCRIPT).digest('hex')}  /app/main.py\nclip demo image (${DEMO_VERSION}), assembled from this machine's files\n`);
    // The snapshotter handed the index it found at rpull to the server: no manifest asked again.
    // (The mount looks for a startup profile among the image's referrers: the API, then the
    // referrers tag `sha256-<hex>`; those are not the image resolved again.)
    const profileLookup = (path: string): boolean => path.includes('/referrers/') || /\/manifests\/sha256-[0-9a-f]{64}$/.test(path);
    expect(proxy.requests.filter((r) => r.path.includes('/manifests/') && !profileLookup(r.path))).toEqual([]);
    expect(await sn.log()).toMatch(/"handedIndex":true[^\n]*snapshotter: image mounted/);
    // Only ranges of the layers were read, never a whole layer; the node layer (the largest) barely.
    for (const l of indexedLayers) expect(blobGets(l.digest).filter((r) => r.range === undefined)).toEqual([]);
    const biggest = [...indexedLayers].sort((a, b) => b.size - a.size)[0]!;
    const read = blobGets(biggest.digest).reduce((n, r) => n + r.bytes, 0);
    expect(read).toBeLessThan(biggest.size / 4);
    // The container used the mount made at pull time (no second one), and its end left it mounted:
    // the image is still pulled, and its next container starts on it.
    expect((await sn.log()).split('\n').filter((l) => l.includes('snapshotter: image mounted'))).toHaveLength(1);
    expect(imageMounts()).toHaveLength(1);
  }, 300_000);

  it('ctr run runs python from the indexed image, reading only ranges of its layers', async () => {
    proxy.requests.length = 0;
    const out = await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', indexed, 'c-py', 'python3', '-c', 'import json; print(1)');
    expect(out).toBe('1\n');
    for (const l of indexedLayers) expect(blobGets(l.digest).filter((r) => r.range === undefined)).toEqual([]);
  }, 300_000);

  it('the metrics endpoint serves per-image series after ctr run: layers, mounts, bytes per tier, reads', async () => {
    const text = await scrape();
    const manifest = (JSON.parse(await skopeoInspect(`docker://${indexed}`)) as { Digest: string }).Digest;
    const index = `sha256:${createHash('sha256').update(await readFile(join(tmp, 'cache', 'indexes', `${manifest.slice(7)}.clip`))).digest('hex')}`;
    const image = { image: indexed, manifest, index };
    expect(sample(text, 'clip_snapshotter_remote_layers_total', image), text).toBe(indexedLayers.length);
    expect(sample(text, 'clip_snapshotter_image_mounts_total', image)).toBeGreaterThanOrEqual(1);
    // A container reading now: the mount's reads count from its start.
    await ctrd.ctr('run', '-d', '--snapshotter', 'clip', indexed, 'c-metrics', '/bin/sh', '-c', 'cat /app/main.py > /dev/null; sleep 600');
    try {
      let now = '';
      // The container's first read, waited for up to 30 s (5 s was short for a container start under load).
      for (const until = Date.now() + 30_000; Date.now() < until;) {
        now = await scrape();
        if ((sample(now, 'clip_image_reads', image) ?? 0) > 0) break;
        await sleep(100);
      }
      expect(sample(now, 'clip_image_mounted', image), now).toBe(1);
      expect(sample(now, 'clip_image_reads', image)).toBeGreaterThan(0);
      const bytes = ['disk', 'remote', 'source'].map((tier) => sample(now, 'clip_image_fetched_bytes', { ...image, tier }));
      expect(bytes.every((b) => b !== undefined)).toBe(true);
      expect(bytes[0]! + bytes[2]!).toBeGreaterThan(0);
      expect(sample(now, 'clip_image_tier_errors', { ...image, tier: 'source' })).toBe(0);
      expect(sample(now, 'clip_snapshotter_requests_total', { method: 'Prepare', code: 'OK' })).toBeGreaterThan(0);
    } finally {
      await ctrd.ctr('tasks', 'kill', '-s', 'SIGKILL', 'c-metrics').catch(() => undefined);
      await waitStopped('c-metrics');
      await ctrd.ctr('tasks', 'rm', '-f', 'c-metrics').catch(() => undefined);
      await ctrd.ctr('containers', 'rm', 'c-metrics').catch(() => undefined);
    }
  }, 300_000);

  it('two containers of the image share one image mount, each with its own writable layer', async () => {
    await ctrd.ctr('run', '-d', '--snapshotter', 'clip', indexed, 'c-a', '/bin/sleep', '600');
    await ctrd.ctr('run', '-d', '--snapshotter', 'clip', indexed, 'c-b', '/bin/sleep', '600');
    const mounts = imageMounts();
    expect(mounts).toHaveLength(1);
    // `ctr snapshots mounts` prints the mount command the snapshotter's Mounts answer makes.
    const mountsOf = async (id: string): Promise<string> => /lowerdir=[^,\s]*/.exec(await ctrd.ctr('snapshots', '--snapshotter', 'clip', 'mounts', '/mnt', id))![0];
    expect(await mountsOf('c-a')).toBe(`lowerdir=${mounts[0]}`);
    expect(await mountsOf('c-b')).toBe(`lowerdir=${mounts[0]}`);
    await ctrd.ctr('tasks', 'exec', '--exec-id', 'w1', 'c-a', '/bin/sh', '-c', 'echo mine > /app/written-by-a');
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r1', 'c-a', '/bin/cat', '/app/written-by-a')).toBe('mine\n');
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r2', 'c-b', '/bin/ls', '/app')).toBe('README\nconfig.json\nmain.py\n');
    // The image itself is untouched.
    expect((await readFile(join(mounts[0]!, 'app/main.py'), 'utf8'))).toBe(APP_SCRIPT);
  }, 300_000);

  it('a restart of the snapshotter after kill -9 keeps its snapshots and the running containers', async () => {
    const before = await snapshots();
    const mountsBefore = imageMounts();
    await sn.kill();
    sn = await startClip();
    await expect(startSnapshotterProcess(['--address', join(tmp, 'second.sock'), '--root', join(tmp, 'root')], join(tmp, 'second.log')))
      .rejects.toThrow(/another clip snapshotter \(pid \d+\) serves this root/);
    expect(await waitForSnapshotter()).toBe(before);
    expect(imageMounts()).toEqual(mountsBefore);
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r3', 'c-a', '/bin/cat', '/app/written-by-a')).toBe('mine\n');
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r4', 'c-b', '/bin/sh', '-c', 'head -c 5 /usr/bin/sh | wc -c')).toBe('5\n');
    // And a new container still starts from it.
    expect(await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', indexed, 'c-run', '/bin/cat', '/app/README')).toBe('The clip demo program: run it with the image\'s default command.\n');
  }, 300_000);

  it('an image mount whose server died is mounted again when the snapshotter starts; stopped containers start again on it', async () => {
    for (const id of ['c-a', 'c-b']) {
      await ctrd.ctr('tasks', 'kill', '-s', 'SIGKILL', id);
      await waitStopped(id);
      await ctrd.ctr('tasks', 'rm', id);
    }
    const [mp] = imageMounts();
    await sn.kill();
    // The node's clip server dies with its holder (a server alone is restarted by its holder):
    // nothing holds the mount's connection any more, and it is left stale.
    const pidFile = (await readdir(join(tmp, 'cache', 'mounts'))).find((f) => f.endsWith('.pid'))!;
    const server = Number((await readFile(join(tmp, 'cache', 'mounts', pidFile), 'utf8')).split('\n')[0]);
    process.kill(Number((await readFile(serverFiles(join(tmp, 'cache')).lock, 'utf8')).split('\n')[0]), 'SIGKILL');
    process.kill(server, 'SIGKILL');
    for (let i = 0; i < 100 && existsSync(`/proc/${server}`); i++) await sleep(50);
    // A name never looked up asks the dead connection (a file read before may still come from the
    // page cache: opens are not sent to the server, FUSE_NO_OPEN_SUPPORT).
    await expect(stat(join(mp!, 'app/never-looked-up'))).rejects.toThrow(/ENOTCONN|Transport endpoint/);
    sn = await startClip();
    expect(imageMounts()).toEqual([mp]);
    expect(await readFile(join(mp!, 'app/main.py'), 'utf8')).toBe(APP_SCRIPT);
    await waitForSnapshotter();
    // The containers' writable layers are still theirs.
    await ctrd.ctr('tasks', 'start', '-d', 'c-a');
    await ctrd.ctr('tasks', 'start', '-d', 'c-b');
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r5', 'c-a', '/bin/cat', '/app/written-by-a')).toBe('mine\n');
    expect(await ctrd.ctr('tasks', 'exec', '--exec-id', 'r6', 'c-b', '/bin/ls', '/app')).toBe('README\nconfig.json\nmain.py\n');
  }, 300_000);

  it('an image without an index falls back: containerd unpacks it and it runs', async () => {
    proxy.requests.length = 0;
    await ctrd.ctrRemote('images', 'rpull', '--plain-http', '--snapshotter', 'clip', plain);
    for (const l of plainLayers) expect(blobGets(l.digest).filter((r) => r.range === undefined).length).toBeGreaterThan(0);
    expect(await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', plain, 'c-plain', '/bin/sh', '-c', 'cat /srv/hello /etc/plain-image; test -e /app/main.py || echo not the indexed image')).toBe(
      'hello from the plain image\nno index here\nnot the indexed image\n');
    expect(imageMounts()).toHaveLength(1); // still only the indexed image's
    // Counted per image, with the reason.
    expect(sample(await scrape(), 'clip_snapshotter_unpacked_layers_total', { image: plain, reason: 'no-index' })).toBe(plainLayers.length);
  }, 300_000);

  it('an image without an index on the first layer of the indexed one: that layer is unpacked for it, and it runs', async () => {
    proxy.requests.length = 0;
    await ctrd.ctrRemote('images', 'rpull', '--plain-http', '--snapshotter', 'clip', shared);
    // The shared layer was served lazily for the indexed image; under this one it is needed whole.
    expect(blobGets(sharedLayers[0]!.digest).filter((r) => r.range === undefined)).toHaveLength(1);
    expect(blobGets(sharedLayers[1]!.digest).filter((r) => r.range === undefined)).toHaveLength(1);
    expect(await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', shared, 'c-shared', '/bin/sh', '-c', 'cat /srv/shared; test -e /app/main.py || echo no app; echo ok')).toBe(
      'on the indexed image\'s base\nno app\nok\n');
    // The indexed image still runs from its mount.
    expect(await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', indexed, 'c-run', '/bin/cat', '/app/README')).toBe('The clip demo program: run it with the image\'s default command.\n');
  }, 300_000);

  it('takes CRI\'s labels as well as ctr-remote\'s, and serves a layer only where the image has it', async () => {
    const lookup = new RemoteImages({ cacheDir: join(tmp, 'lookup-cache') });
    const manifest = JSON.parse(await skopeoInspect(`docker://${indexed}`)) as { Digest: string };
    const src = openImage(indexed);
    const chains = chainIds((await src.resolve()).layers.map((l) => l.diffId));
    await src.close?.();
    const cri = (i: number, target = chains[i]!): Record<string, string> => ({
      [LABEL_TARGET]: target, [LABEL_CRI_REF]: indexed, [LABEL_CRI_LAYER]: indexedLayers[i]!.digest,
    });
    expect(await lookup.lookup(cri(1))).toEqual({
      manifest: manifest.Digest, location: indexed.replace(/:demo$/, ''), position: 1, layers: 4, layerDigest: indexedLayers[1]!.digest, image: indexed,
    });
    expect(await lookup.lookup(cri(1, chains[2]))).toBeUndefined(); // the layer is not where that chain ID says
    expect(await lookup.lookup({ [LABEL_TARGET]: chains[0]!, [LABEL_CRI_REF]: plain, [LABEL_CRI_LAYER]: plainLayers[0]!.digest })).toBeUndefined(); // no index
    expect(await lookup.lookup({ [LABEL_TARGET]: chains[0]! })).toBeUndefined(); // no image named
  }, 120_000);

  it('removing the containers and the images leaves no mount and no snapshot', async () => {
    for (const id of ['c-a', 'c-b']) {
      await ctrd.ctr('tasks', 'kill', '-s', 'SIGKILL', id);
      await waitStopped(id);
      await ctrd.ctr('tasks', 'rm', '-f', id);
      await ctrd.ctr('containers', 'rm', id);
    }
    await ctrd.ctr('images', 'rm', '--sync', indexed, plain, shared);
    for (const until = Date.now() + 60_000; Date.now() < until && (imageMounts().length > 0 || (await snapshots()).trim().split('\n').length > 1);) await sleep(100);
    expect(imageMounts()).toEqual([]);
    expect(await readdir(join(tmp, 'root', 'images'))).toEqual([]);
    expect(await readdir(join(tmp, 'root', 'snapshots'))).toEqual([]);
    expect((await snapshots()).trim().split('\n').slice(1)).toEqual([]);
    const leftover = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(tmp) || m.mountPoint.startsWith(ctrd.dir));
    expect(leftover).toEqual([]);
  }, 300_000);
});
