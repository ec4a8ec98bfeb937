/**
 * `clip run` of an image in a real registry (docker-registry) behind the counting proxy, with its
 * index published: the image is resolved once, by the `clip run` process, which hands the server
 * what it found (the cached index, the repository it reached); the server asks the registry for no
 * manifest, referrer or index again before the mount serves, and reads the layers through the
 * proxy `clip run` was given.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushLayout } from '../../src/oci/push.js';
import { skipUnlessRoot } from '../support/env.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { run } from '../fuse/tools.js';
import { buildRunImages } from './image.js';
import { clip, mountsUnder, NOTHING_LEFT, runState } from './helpers.js';

describe.skipIf(skipUnlessRoot())('clip run of a registry image', () => {
  let tmp: string;
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let ref: string;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clip-run-reg-'));
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    await buildRunImages(join(tmp, 'layout'));
    await pushLayout(join(tmp, 'layout'), 'app', `${registry.host}/run/app:v1`);
    ref = `${proxy.host}/run/app:v1`;
    const pushed = await clip(['index', ref, '--push', '--cache-dir', join(tmp, 'publisher'), '--no-progress']);
    expect(pushed.code, pushed.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    if (!tmp) return;
    await clip(['run', '--cleanup', '--cache-dir', join(tmp, 'cache')]).catch(() => undefined);
    for (const m of mountsUnder(tmp).reverse()) await run('umount', ['-l', m.mountPoint]);
    await proxy?.stop();
    await registry?.stop();
    await rm(tmp, { recursive: true, force: true });
  }, 60_000);

  it('resolves the image once: the server it hands the index to asks the registry for no manifest again', async () => {
    const cache = join(tmp, 'cache');
    proxy.requests.length = 0;
    const r = await clip(['run', ref, '--cache-dir', cache, '--linger', '0', '--', 'cat /srv/data/hello']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello from the image\n');
    expect(r.code).toBe(0);
    const manifests = proxy.requests.filter((q) => q.path.includes('/manifests/'));
    const indexBlobs = proxy.requests.filter((q) => q.path.includes('/referrers/'));
    // `clip run` itself: the tag's manifest once (GET), the referrers lookup for the index. Before
    // the handoff the server resolved the reference again: a second GET of the tag's manifest.
    expect(manifests.filter((q) => q.path.endsWith('/manifests/v1')).map((q) => q.method)).toEqual(['GET']);
    // At most two referrers lookups: the index's (by `clip run`) and the mount's for a startup profile.
    expect(indexBlobs.length).toBeLessThanOrEqual(2);
    // The layers were read through the proxy `clip run` was given, in ranges.
    expect(proxy.requests.some((q) => q.path.includes('/blobs/') && q.range !== undefined)).toBe(true);
    expect(await runState(cache)).toEqual(NOTHING_LEFT);

    // Warm (index cached, layers on disk, the first run's startup profile kept): the tag is resolved
    // once (manifest and config), and nothing else is asked for: no second manifest, no referrers,
    // no layer byte.
    proxy.requests.length = 0;
    const again = await clip(['run', ref, '--cache-dir', cache, '--', 'cat /srv/data/hello']);
    expect(again.stdout).toBe('hello from the image\n');
    const asked = proxy.requests.map((q) => `${q.method} ${q.path.replace(/^.*\/run\/app/, '')}${q.range ? ` ${q.range}` : ''}`);
    expect(asked.filter((q) => q.includes('/manifests/'))).toEqual(['GET /manifests/v1']);
    expect(asked.filter((q) => q.includes('/referrers/') || q.includes('bytes='))).toEqual([]);
    expect(asked.filter((q) => q.includes('/blobs/'))).toHaveLength(1); // the config
    // That run left the image mounted (the default linger): the next run of the name joins the
    // mount and asks the registry nothing at all, as `ctr run` of a pulled image would.
    proxy.requests.length = 0;
    const joined = await clip(['run', ref, '--cache-dir', cache, '--', 'cat /srv/data/hello']);
    expect(joined.stdout).toBe('hello from the image\n');
    expect(joined.code).toBe(0);
    expect(proxy.requests).toEqual([]);
    const cleanup = await clip(['run', '--cleanup', '--cache-dir', cache]);
    expect(cleanup.stdout).toBe('clip: cleaned 0 container(s), 0 runc state(s), 1 image mount(s)\n');
    expect(await runState(cache)).toEqual(NOTHING_LEFT);
  }, 120_000);
});
