/**
 * `clip mounts` and `clip mount --json`: a background mount says where it is, what it serves and
 * what it has cost (image, pid, uptime, memory, bytes per tier); an ended or killed one is gone
 * from the list.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MountStatus } from '../../src/mount/status.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { run } from '../fuse/tools.js';
import { cleanScratch, clip, killServerAndHolder, scratch } from './helpers.js';

describe.skipIf(skipUnlessRoot())('clip mounts', () => {
  let ref: string;
  let mnt: string;
  let cache: string;

  beforeAll(async () => {
    ref = (await fixture('basic')).ref;
    ({ mnt, cache } = await scratch('clip-status'));
  });
  afterAll(() => cleanScratch({ mnt, cache }));

  const mounts = async (): Promise<MountStatus[]> => {
    const r = await clip(['mounts', '--cache-dir', cache, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as MountStatus[];
  };

  it('lists a background mount with its image, process and bytes per tier; forgets it once its server and holder are killed', async () => {
    expect(await mounts()).toEqual([]);
    expect((await clip(['mounts', '--cache-dir', cache])).stdout).toBe('no clip mounts running\n');

    const started = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--json']);
    expect(started.code, started.stderr).toBe(0);
    const told = JSON.parse(started.stdout) as { mountpoint: string; pid: number; image: string; log: string };
    expect(told).toMatchObject({ mountpoint: mnt, image: ref, log: join(cache, 'server', 'server.log') });
    expect(told.pid).toBeGreaterThan(0);

    expect(readFileSync(join(mnt, 'etc/hostname'), 'utf8')).toBe('clip-basic-2\n');
    // The status is rewritten every few seconds: wait for one that counts the read.
    let listed: MountStatus[] = [];
    for (let t = 0; t < 30 && !(listed[0]?.bytes.source); t++) {
      listed = await mounts();
      if (!listed[0]?.bytes.source) await sleep(500);
    }
    expect(listed).toEqual([expect.objectContaining({ mountpoint: mnt, pid: told.pid, index: 'cache', manifest: expect.stringMatching(/^sha256:/) })]);
    expect(listed[0]!.bytes.source).toBeGreaterThan(0);
    expect(listed[0]!.rssBytes).toBeGreaterThan(10 * 1024 * 1024);
    const table = (await clip(['mounts', '--cache-dir', cache])).stdout;
    expect(table).toMatch(/^MOUNTPOINT\s+IMAGE\s+PID\s+UP\s+RSS\s+FROM DISK\s+FROM REMOTE\s+FROM SOURCE\s+INDEX\s+RESTARTS\n/);
    expect(table).toContain(String(told.pid));

    // Killed with its holder (nothing restarts it): its status is stale, shown no more, and removed.
    await killServerAndHolder(cache, mnt);
    expect(await mounts()).toEqual([]);
    await run('umount', ['-l', mnt]).catch(() => undefined);
  });
});
