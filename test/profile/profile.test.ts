/**
 * Startup profiles for real, as root: `clip profile --push` runs a command with runc on a mount
 * that records, keeps the profile locally and in Redis and pushes it next to the index; a node
 * with an empty cache mounts the image, finds the profile in the registry and fetches its ranges
 * before anything reads the mount (seen at the proxy in front of the registry); damaged and stale
 * profiles are logged and ignored, and the mount serves the right bytes either way.
 */
import { readFileSync } from 'node:fs';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageIndex } from '../../src/index/reader.js';
import { pushLayout } from '../../src/oci/push.js';
import { decodeProfile, encodeProfile } from '../../src/profile/format.js';
import { localProfilePath, sharedProfileKey } from '../../src/profile/store.js';
import { serverFiles } from '../../src/server/paths.js';
import { cachedIndexPath } from '../../src/storage/indexer.js';
import { run } from '../fuse/tools.js';
import { clip as clipCli, waitUntil } from '../mount/helpers.js';
import { buildRunImages } from '../run/image.js';
import { clip, mountsUnder } from '../run/helpers.js';
import { skipUnlessRoot } from '../support/env.js';
import { blobGets, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

const READS = ['/srv/data/hello', '/etc/group'];

describe.skipIf(skipUnlessRoot())('startup profiles', () => {
  let tmp: string;
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let redis: RedisServer;
  let image: string;
  let manifestDigest: string;
  let index: ImageIndex;
  let profileBytes: Buffer;
  const caches: string[] = [];

  const cache = async (name: string): Promise<string> => {
    const dir = join(tmp, name);
    caches.push(dir);
    return dir;
  };

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-profile-'));
    const layout = join(tmp, 'layout');
    await buildRunImages(layout);
    registry = await startRegistry();
    await pushLayout(layout, 'app', `${registry.host}/test/profile:app`);
    proxy = await startFaultProxy(registry.host);
    redis = await startRedis();
    image = `${proxy.host}/test/profile:app`;
  });
  afterAll(async () => {
    for (const c of caches) await clip(['run', '--cleanup', '--cache-dir', c]).catch(() => undefined);
    if (tmp) for (const m of mountsUnder(tmp).reverse()) await run('umount', ['-l', m.mountPoint]);
    await proxy?.stop();
    await registry?.stop();
    await redis?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('clip profile --push records what the command read, keeps it locally and in Redis, and pushes it', async () => {
    const a = await cache('a');
    const r = await clip(['profile', image, '--push', '--remote-cache', redis.url, '--cache-dir', a, '--json', '--', `cat ${READS.join(' ')}`]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('hello from the image');
    const summary = JSON.parse(lines.at(-1)!) as { manifestDigest: string; ranges: number; pushed: string | null; shared: boolean; file: string };
    expect(summary.pushed).toMatch(/^sha256:/);
    expect(summary.shared).toBe(true);
    manifestDigest = summary.manifestDigest;
    index = await ImageIndex.open(cachedIndexPath(a, manifestDigest));
    profileBytes = await readFile(localProfilePath(a, manifestDigest));
    const profile = decodeProfile(profileBytes, 'local');
    expect(profile.ranges.length).toBe(summary.ranges);
    // Every file the command read is in the profile: its layer, and a range covering its bytes.
    for (const path of READS) {
      const loc = index.dataLocation(index.resolvePathOrThrow(path))!;
      const ino = index.resolvePathOrThrow(path);
      const hit = profile.ranges.find((x) => x.layer === loc.layer && x.offset <= loc.offset && loc.offset + loc.size <= x.offset + x.length);
      expect(hit, path).toBeDefined();
      expect(hit!.ino).toBe(ino);
    }
    // And nothing of a file it did not read.
    const secret = index.dataLocation(index.resolvePathOrThrow('/home/app/secret'))!;
    expect(profile.ranges.some((x) => x.layer === secret.layer && x.offset <= secret.offset && secret.offset < x.offset + x.length)).toBe(false);
    // The ranges are compact; learned checkpoints (a window each) come on top of them.
    expect(encodeProfile({ ...profile, learned: new Map() }).length).toBeLessThan(4096);
    const client = new Redis(redis.url);
    try {
      expect((await client.getBuffer(sharedProfileKey(manifestDigest)))?.equals(profileBytes)).toBe(true);
    } finally {
      client.disconnect();
    }
  });

  it('a node with an empty cache finds the profile in the registry and fetches its ranges before anything reads', async () => {
    const b = await cache('b');
    const mnt = join(tmp, 'mnt-b');
    await mkdir(mnt);
    const before = proxy.requests.length;
    const m = await clipCli(['mount', image, mnt, '--background', '--cache-dir', b]);
    expect(m.code).toBe(0);
    try {
      const layerDigests = index.layers.map((l) => l.digest);
      const blobRanges = (): number => proxy.requests.slice(before).filter((q) => layerDigests.some((d) => blobGets(d)(q)) && q.range !== undefined).length;
      // Nothing has read the mount: whatever layer bytes come now are the prefetch.
      expect(await waitUntil(() => blobRanges() > 0, 20_000)).toBe(true);
      expect(proxy.requests.slice(before).some((q) => q.path.includes('/referrers/') || q.path.includes('sha256-'))).toBe(true);
      expect(await waitUntil(() => readLog(b).includes('profile: prefetch done'), 20_000)).toBe(true);
      const fetched = blobRanges();
      expect(await readFile(join(mnt, 'srv/data/hello'), 'utf8')).toBe('hello from the image\n');
      expect((await readFile(join(mnt, 'etc/group'), 'utf8')).startsWith('root:x:0:')).toBe(true);
      // Both were prefetched: reading them asked the registry for nothing more.
      expect(blobRanges()).toBe(fetched);
      expect(await readFile(localProfilePath(b, manifestDigest))).toEqual(profileBytes);
      // clip mount listed the referrers once (the index and the profile from one listing) and kept
      // the profile locally while the server started: the server found it there, asking nothing.
      expect(proxy.requests.slice(before).filter((q) => q.path.includes('/referrers/')).length).toBe(1);
      expect(readLog(b)).toMatch(/"profile":"[^"]*\/profiles\/[^"]*"[^\n]*profile: found/);
    } finally {
      await clipCli(['unmount', mnt, '--cache-dir', b]);
    }
  });

  it('damaged and stale profiles are logged and ignored; the mount reads the right bytes', async () => {
    const c = await cache('c');
    const mnt = join(tmp, 'mnt-c');
    await mkdir(mnt);
    // Stale in the local cache (recorded on another index); damaged in Redis; only the registry's is good.
    const stale = decodeProfile(profileBytes, 'x');
    stale.indexDigest = `sha256:${'0'.repeat(64)}`;
    await mkdir(join(c, 'profiles'), { recursive: true, mode: 0o700 });
    await writeFile(localProfilePath(c, manifestDigest), encodeProfile(stale), { mode: 0o600 });
    const client = new Redis(redis.url);
    const damaged = Buffer.from(profileBytes);
    damaged[damaged.length - 40]! ^= 0xff;
    await client.set(sharedProfileKey(manifestDigest), damaged);
    client.disconnect();
    const m = await clipCli(['mount', image, mnt, '--background', '--cache-dir', c, '--remote-cache', redis.url]);
    expect(m.code).toBe(0);
    try {
      expect(await waitUntil(() => readLog(c).includes('profile: prefetch done'), 20_000)).toBe(true);
      const log = readLog(c);
      expect(log).toMatch(/profile is stale or of another image: recorded on index sha256:0{64}/);
      expect(log).toMatch(/checksum mismatch/);
      expect(await readFile(join(mnt, 'srv/data/hello'), 'utf8')).toBe('hello from the image\n');
    } finally {
      await clipCli(['unmount', mnt, '--cache-dir', c]);
    }
  });

  it('with nothing but a damaged profile, the mount warns, records its own start and serves the right bytes', async () => {
    const d = await cache('d');
    const mnt = join(tmp, 'mnt-d');
    await mkdir(mnt);
    const layoutImage = `oci:${join(tmp, 'layout')}:app`;
    await mkdir(join(d, 'profiles'), { recursive: true, mode: 0o700 });
    await writeFile(localProfilePath(d, manifestDigest), profileBytes.subarray(0, profileBytes.length - 7), { mode: 0o600 });
    const m = await clipCli(['mount', layoutImage, mnt, '--background', '--cache-dir', d]);
    expect(m.code).toBe(0);
    try {
      expect(await readFile(join(mnt, 'srv/data/hello'), 'utf8')).toBe('hello from the image\n');
      expect(await waitUntil(() => /profile: unusable, ignored/.test(readLog(d)), 30_000)).toBe(true);
      // After two quiet seconds the mount keeps what it recorded (the next mount's profile).
      expect(await waitUntil(() => readLog(d).includes('profile: recorded and kept'), 30_000)).toBe(true);
      const own = decodeProfile(await readFile(localProfilePath(d, manifestDigest)), 'own');
      const loc = index.dataLocation(index.resolvePathOrThrow('/srv/data/hello'))!;
      expect(own.ranges.map((x) => [x.layer, x.offset])).toContainEqual([loc.layer, loc.offset]);
    } finally {
      await clipCli(['unmount', mnt, '--cache-dir', d]);
    }
  });

  it('(last: it publishes the index) a node whose server is kept running has the server fetch the profile beside the index, from one referrers listing', async () => {
    const e = await cache('e');
    const mnt = join(tmp, 'mnt-e');
    await mkdir(mnt);
    // The index made by the first test's node is published (until now each node made its own).
    const pushed = await clip(['index', image, '--push', '--cache-dir', join(tmp, 'a')]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect((await clipCli(['server', 'start', '--cache-dir', e])).code).toBe(0);
    try {
      const before = proxy.requests.length;
      const m = await clipCli(['mount', image, mnt, '--background', '--cache-dir', e]);
      expect(m.code, m.stderr).toBe(0);
      try {
        expect(await waitUntil(() => readLog(e).includes('profile: prefetch done'), 20_000)).toBe(true);
        // Resolved by the server (the command asked the registry nothing), the profile taken from
        // the registry artifact fetched while the index was: the index lookup's listing served both.
        expect(readLog(e)).toMatch(/"profile":"[^"]*@sha256:[0-9a-f]{64}"[^\n]*profile: found/);
        expect(proxy.requests.slice(before).filter((q) => q.path.includes('/referrers/')).length).toBe(1);
        expect(await readFile(join(mnt, 'srv/data/hello'), 'utf8')).toBe('hello from the image\n');
        expect(await readFile(localProfilePath(e, manifestDigest))).toEqual(profileBytes);
      } finally {
        await clipCli(['unmount', mnt, '--cache-dir', e]);
      }
    } finally {
      await clipCli(['server', 'stop', '--cache-dir', e]);
    }
  });
});

function readLog(cacheDir: string): string {
  try {
    return readFileSync(serverFiles(cacheDir).log, 'utf8');
  } catch {
    return '';
  }
}
