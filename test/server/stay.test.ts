/**
 * `clip server start` and `clip server stop`: a node's server kept running without mounts (what a
 * node's boot starts, so that no mount waits for a server to start), across the end of its mounts,
 * a crash and a restart; stopped at once when it serves nothing, and never by taking a mount down.
 * `clip mount` hands such a server the image to resolve (it has the registry code loaded), and
 * indexes only an image with no index to find itself, where its progress shows.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnded } from '../../src/mount/files.js';
import { liveHolder, serverFiles } from '../../src/server/paths.js';
import type { ClientReply } from '../../src/server/protocol.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { startRegistry } from '../support/registry.js';
import { clipProcess, MAIN } from '../cli/program.js';
import { cleanScratch, clip, fuseMounted, holderPidOf, scratch, waitUntil } from '../mount/helpers.js';

type ServerStatus = Extract<ClientReply, { op: 'status'; ok: true }>;

/** Longer than the 5 s a server without mounts waits before it ends (node-server.ts IDLE_MS). */
const PAST_IDLE_MS = 7000;

describe.skipIf(skipUnlessRoot())('a node server kept running', () => {
  let ref: string;
  let mnt: string;
  let cache: string;

  beforeAll(async () => {
    ref = (await fixture('basic')).ref;
    ({ mnt, cache } = await scratch('clip-stay'));
  });
  afterAll(async () => {
    await clip(['server', 'stop', '--cache-dir', cache]);
    await cleanScratch({ mnt, cache });
  });

  const status = async (dir = cache): Promise<ServerStatus | undefined> => {
    const r = await clip(['server', 'status', '--cache-dir', dir, '--json']);
    return r.code === 0 ? (JSON.parse(r.stdout) as ServerStatus) : undefined;
  };
  const alive = (pid: number): boolean => !processEnded(pid);

  it('outlives its mounts, a crash of its server, and ends on clip server stop', async () => {
    const none = await clip(['server', 'stop', '--cache-dir', cache]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe(`clip: no clip server runs for ${cache}\n`);

    const started = await clip(['server', 'start', '--cache-dir', cache, '--json']);
    expect(started.code, started.stderr).toBe(0);
    const told = JSON.parse(started.stdout) as { pid: number; holderPid: number; mounts: number };
    expect(told.mounts).toBe(0);
    expect(told.holderPid).toBe(holderPidOf(cache));
    // Starting it again finds it: the same server, nothing new started.
    expect(JSON.parse((await clip(['server', 'start', '--cache-dir', cache, '--json'])).stdout)).toMatchObject({ pid: told.pid, holderPid: told.holderPid });

    // A mount comes and goes; the server stays past the wait after which it would have ended. The
    // image has no index yet: the server, asked first, sends it back, and the command indexes it.
    const mounted = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--json', '--log-level', 'debug']);
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(mounted.stderr).toContain('mount: the server is kept running; it resolves the image');
    expect(mounted.stderr).toMatch(/"origin":"indexed"[^\n]*"msg":"index ready"/);
    expect((JSON.parse(mounted.stdout) as { pid: number }).pid).toBe(told.pid);
    expect(readFileSync(`${mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
    expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);
    // Indexed now: the server resolves it alone; the command neither indexes nor resolves.
    const resolved = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--log-level', 'debug']);
    expect(resolved.code, resolved.stderr).toBe(0);
    expect(resolved.stderr).toContain('mount: the server is kept running; it resolves the image');
    expect(resolved.stderr).not.toContain('index ready');
    expect(resolved.stderr).not.toContain('asking it to mount');
    expect(resolved.stdout).toMatch(/^clip: mounted .* \(\d+ entries, index from the cache\)\n$/);
    expect(readFileSync(`${mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
    expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);
    await sleep(PAST_IDLE_MS);
    expect(alive(told.holderPid)).toBe(true);
    expect(await status()).toMatchObject({ pid: told.pid, stay: true, mounts: [] });
    expect(readFileSync(serverFiles(cache).log, 'utf8')).toMatch(/server: kept running; the mount code is loaded/);

    // Its server killed: the holder starts another, which still stays.
    process.kill(told.pid, 'SIGKILL');
    expect(await waitUntil(() => !alive(told.pid), 10_000)).toBe(true);
    let next: ServerStatus | undefined;
    for (let t = 0; t < 100 && (next?.pid ?? told.pid) === told.pid; t++) {
      next = await status();
      if ((next?.pid ?? told.pid) === told.pid) await sleep(100);
    }
    expect(next).toMatchObject({ holderPid: told.holderPid, stay: true, restarts: 1 });
    expect(next!.pid).not.toBe(told.pid);

    // Stopped with nothing mounted: gone when the command returns, and a new start works at once.
    const stopped = await clip(['server', 'stop', '--cache-dir', cache]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toBe(`clip: server pid ${next!.pid} stopped\n`);
    expect(alive(told.holderPid)).toBe(false);
    expect(await status()).toBeUndefined();
    const again = await clip(['server', 'start', '--cache-dir', cache, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { holderPid: number }).holderPid).not.toBe(told.holderPid);
  });

  it('resolves a registry image itself (the index published next to it); a restarted server takes the mount over without the registry', async () => {
    const registry = await startRegistry();
    let registryUp = true;
    const pub = await mkdtemp(join(tmpdir(), 'clip-stay-pub-'));
    const node = await scratch('clip-stay-registry'); // an empty node: the first test indexed this image
    try {
      const remote = await pushFixture('basic', registry.host);
      const pushed = await clipProcess(['index', remote, '--push', '--cache-dir', pub, '--no-progress'], {}, { entry: MAIN });
      expect(pushed.code, pushed.stderr).toBe(0);
      expect((await clip(['server', 'start', '--cache-dir', node.cache])).code).toBe(0);
      const mounted = await clip(['mount', remote, node.mnt, '--cache-dir', node.cache, '--background', '--log-level', 'debug']);
      expect(mounted.code, mounted.stderr).toBe(0);
      expect(mounted.stderr).toContain('mount: the server is kept running; it resolves the image');
      expect(mounted.stderr).not.toContain('index ready'); // not resolved in the command
      expect(mounted.stdout).toMatch(/\(\d+ entries, index published with the image\)\n$/);
      expect(readFileSync(serverFiles(node.cache).log, 'utf8')).toMatch(/"origin":"registry"[^\n]*"msg":"index ready"/);
      expect(readFileSync(`${node.mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');

      // The next server takes the mount over from what this one resolved: the registry, gone now,
      // is not asked for the image again (it would fail, and the mount with it).
      const first = (await status(node.cache))!;
      await registry.stop();
      registryUp = false;
      expect((await clip(['server', 'restart', '--cache-dir', node.cache])).code).toBe(0);
      let next = first;
      for (let t = 0; t < 100 && next.pid === first.pid; t++) {
        await sleep(100);
        next = (await status(node.cache)) ?? first;
      }
      expect(next).toMatchObject({ restarts: 1, stay: true, mounts: [expect.objectContaining({ mountpoint: node.mnt })] });
      expect(readdirSync(join(node.mnt, 'etc'))).toContain('hostname');
      expect(readFileSync(`${node.mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
    } finally {
      await clip(['unmount', node.mnt, '--cache-dir', node.cache]);
      await clip(['server', 'stop', '--cache-dir', node.cache]);
      await cleanScratch(node);
      if (registryUp) await registry.stop();
      await rm(pub, { recursive: true, force: true });
    }
  });

  it('stop never takes a mount down: the server ends after its last unmount; SIGTERM ends a holder without mounts', async () => {
    const started = JSON.parse((await clip(['server', 'start', '--cache-dir', cache, '--json'])).stdout) as { pid: number; holderPid: number };
    // At the default log level the command that hands the mount over loads no pino (Node's module
    // debug lines name every CommonJS file loaded). The image is indexed in this cache first: one
    // to index here would load it, with the indexing code.
    const indexed = await clipProcess(['index', ref, '--cache-dir', cache, '--no-progress'], {}, { entry: MAIN });
    expect(indexed.code, indexed.stderr).toBe(0);
    const handed = await clipProcess(['mount', ref, mnt, '--cache-dir', cache, '--background'], { NODE_DEBUG: 'module' }, { entry: MAIN });
    expect(handed.code, handed.stderr).toBe(0);
    expect(handed.stderr).toMatch(/MODULE \d+: load "[^"]*\/commander\/index\.js"/); // the debug lines are there
    expect(handed.stderr).not.toMatch(/MODULE \d+: load "[^"]*\/pino\/pino\.js"/);
    const stopped = await clip(['server', 'stop', '--cache-dir', cache]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toBe(`clip: server pid ${started.pid} ends once its 1 mount is unmounted (clip mounts lists them)\n`);
    expect(await status()).toMatchObject({ pid: started.pid, stay: false });
    expect(fuseMounted(mnt)).toBe(true);
    expect(readFileSync(`${mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
    // A signal is ignored while a mount is held ...
    process.kill(started.holderPid, 'SIGTERM');
    const ignored = (): boolean => readFileSync(serverFiles(cache).log, 'utf8').includes('holder: ignoring the signal while mounts are held');
    expect(await waitUntil(ignored, 20_000)).toBe(true);
    expect(alive(started.holderPid)).toBe(true);
    expect(readFileSync(`${mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
    // ... and once the mount is gone the server ends by itself (it was told to stop).
    expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);
    expect(await waitUntil(() => processEnded(started.holderPid), 20_000)).toBe(true);

    // A stop that races a mount being made: either the mount is made and served (the server ends
    // after it), or it fails and leaves nothing mounted; never a dead mount.
    for (let round = 0; round < 2; round++) {
      expect((await clip(['server', 'start', '--cache-dir', cache])).code).toBe(0);
      const [raced] = await Promise.all([
        clip(['mount', ref, mnt, '--cache-dir', cache, '--background']),
        sleep(300 * round).then(() => clip(['server', 'stop', '--cache-dir', cache])),
      ]);
      if (raced.code === 0) expect(fuseMounted(mnt)).toBe(true);
      if (fuseMounted(mnt)) {
        expect(readFileSync(`${mnt}/etc/hostname`, 'utf8')).toBe('clip-basic-2\n');
        expect((await clip(['unmount', mnt, '--cache-dir', cache])).code).toBe(0);
      }
      const holder = liveHolder(serverFiles(cache).lock);
      if (holder !== undefined) expect(await waitUntil(() => processEnded(holder), 20_000)).toBe(true);
    }

    // A holder kept running with no mount ends on SIGTERM (a service manager's stop).
    const kept = JSON.parse((await clip(['server', 'start', '--cache-dir', cache, '--json'])).stdout) as { holderPid: number };
    process.kill(kept.holderPid, 'SIGTERM');
    expect(await waitUntil(() => processEnded(kept.holderPid), 20_000)).toBe(true);
    expect(await status()).toBeUndefined();
  });
});
