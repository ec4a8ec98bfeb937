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
import type { ClientReply } from '../../src/server/protocol.js';

type ServerStatus = Extract<ClientReply, { op: 'status'; ok: true }>;
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { run } from '../fuse/tools.js';
import { freePort } from '../support/registry.js';
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

    const metricsPort = await freePort();
    const started = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--json', '--metrics-addr', `127.0.0.1:${metricsPort}`]);
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
    // Memory per mount: its loaded index, its learned checkpoints' windows, the files open through it, READs in flight.
    expect(listed[0]!.memory).toEqual({ indexBytes: expect.any(Number), learnedWindowBytes: expect.any(Number), openFiles: 0, readsInFlight: 0 });
    expect(listed[0]!.memory!.indexBytes).toBeGreaterThan(0);
    const table = (await clip(['mounts', '--cache-dir', cache])).stdout;
    expect(table).toMatch(/^MOUNTPOINT\s+IMAGE\s+PID\s+UP\s+RSS\s+MOUNT MEM\s+FROM DISK\s+FROM REMOTE\s+FROM SOURCE\s+INDEX\s+RESTARTS\n/);
    expect(table).toContain(String(told.pid));

    // Memory per server: split into its own (anon) and the node binary's pages, V8 heap, buffers.
    const server = JSON.parse((await clip(['server', 'status', '--cache-dir', cache, '--json'])).stdout) as ServerStatus;
    expect(server.pid).toBe(told.pid);
    expect(server.memory.anon + server.memory.file).toBeGreaterThan(10 * 1024 * 1024);
    expect(server.memory.anon).toBeGreaterThan(0);
    expect(server.memory.heapUsed).toBeGreaterThan(0);
    // The loaded index is shared memory, counted among the array buffers.
    expect(server.memory.arrayBuffers).toBeGreaterThanOrEqual(server.mounts[0]!.memory!.indexBytes);
    expect(server.mounts[0]!.memory!.indexBytes).toBe(listed[0]!.memory!.indexBytes);
    expect((await clip(['server', 'status', '--cache-dir', cache])).stdout).toMatch(/^memory: anon [\d.]+ MiB, file [\d.]+ MiB; V8 heap .* used of .*, array buffers .*, kept spans /m);

    // And Prometheus has both.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const gauge = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1]);
    expect(gauge('clip_process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(gauge('clip_process_anon_memory_bytes')).toBeGreaterThan(0);
    expect(gauge('clip_process_heap_total_bytes')).toBeGreaterThanOrEqual(gauge('clip_process_heap_used_bytes'));
    expect(gauge('clip_process_array_buffers_bytes')).toBeGreaterThanOrEqual(listed[0]!.memory!.indexBytes);
    expect(gauge('clip_process_kept_spans_bytes')).toBeGreaterThanOrEqual(0);
    expect(gauge('clip_mount_index_bytes')).toBe(listed[0]!.memory!.indexBytes);
    expect(gauge('clip_mount_open_files')).toBe(0);
    expect(gauge('clip_mount_learned_window_bytes')).toBeGreaterThanOrEqual(0); // NaN when missing

    // Killed with its holder (nothing restarts it): its status is stale, shown no more, and removed.
    await killServerAndHolder(cache, mnt);
    expect(await mounts()).toEqual([]);
    await run('umount', ['-l', mnt]).catch(() => undefined);
  });
});
