/**
 * Two images that share a base layer, mounted in the background on one cache directory: the node
 * server holds one open cache file for the common layer (counted in /proc/PID/fd), both mounts
 * read its chunks from one fetch, and the file of a layer only one image has is closed when that
 * image is unmounted.
 */
import { readlinkSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededBytes, writeImage, type LayerEntry } from '../../src/oci/build/index.js';
import type { MountStatus } from '../../src/mount/status.js';
import { skipUnlessRoot } from '../support/env.js';
import { T0 } from '../support/fixtures/index.js';
import { cleanScratch, clip, daemonPidOf, fuseMounted } from './helpers.js';

const m = { mtime: { sec: T0, nsec: 0 } };
const BASE_FILE = seededBytes('shared-layers/base', 6 * 1024 * 1024);

const base: LayerEntry[] = [
  { type: 'dir', path: 'usr', ...m },
  { type: 'dir', path: 'usr/lib', ...m },
  { type: 'file', path: 'usr/lib/libbase.so', content: BASE_FILE, mode: 0o755, ...m },
];
const top = (name: string): LayerEntry[] => [
  { type: 'dir', path: 'app', ...m },
  { type: 'file', path: `app/${name}.txt`, content: `image ${name}\n`, ...m },
];

/** The server's open descriptors on layer files of the cache, by layer file name. */
function openLayerFiles(pid: number, cache: string): Map<string, number> {
  const prefix = join(cache, 'layers') + '/';
  const byName = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (!target.startsWith(prefix)) continue;
    const name = target.slice(prefix.length);
    byName.set(name, (byName.get(name) ?? 0) + 1);
  }
  return byName;
}

const hexOf = (diffId: string): string => diffId.replace(/^sha256:/, '');

describe.skipIf(skipUnlessRoot())('mounts of images sharing a layer', () => {
  let work: string;
  let layout: string;
  let baseDiff: string;
  let topDiffA: string;
  const cache = (): string => join(work, 'cache');
  const mntA = (): string => join(work, 'a');
  const mntB = (): string => join(work, 'b');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-shared-layers-'));
    layout = join(work, 'layout');
    const a = await writeImage(layout, { layers: [{ entries: base }, { entries: top('a') }], tag: 'a' });
    const b = await writeImage(layout, { layers: [{ entries: base }, { entries: top('b') }], tag: 'b' });
    expect(a.layers[0]!.diffId).toBe(b.layers[0]!.diffId);
    baseDiff = hexOf(a.layers[0]!.diffId);
    topDiffA = hexOf(a.layers[1]!.diffId);
    for (const d of ['a', 'b']) await import('node:fs/promises').then((fs) => fs.mkdir(join(work, d)));
  }, 120_000);

  afterAll(async () => {
    await cleanScratch({ mnt: mntA(), cache: cache() }).catch(() => undefined);
    if (fuseMounted(mntB())) await clip(['unmount', mntB(), '--cache-dir', cache()]);
    await rm(work, { recursive: true, force: true });
  });

  it('share one open cache file and one fetch of each chunk; a layer of one image is closed with its unmount', async () => {
    for (const [tag, mnt] of [['a', mntA()], ['b', mntB()]] as const) {
      const r = await clip(['mount', `oci:${layout}:${tag}`, mnt, '--cache-dir', cache(), '--background']);
      expect(r.code, r.stderr).toBe(0);
    }
    const pid = daemonPidOf(cache(), mntA());
    expect(daemonPidOf(cache(), mntB())).toBe(pid);

    // Both mounts read the base layer's file at once, the disk cache cold.
    const [fromA, fromB, appA] = await Promise.all([
      readFile(join(mntA(), 'usr/lib/libbase.so')),
      readFile(join(mntB(), 'usr/lib/libbase.so')),
      readFile(join(mntA(), 'app/a.txt'), 'utf8'),
    ]);
    expect(fromA.equals(BASE_FILE)).toBe(true);
    expect(fromB.equals(BASE_FILE)).toBe(true);
    expect(appA).toBe('image a\n');

    const open = openLayerFiles(pid, cache());
    const baseFiles = [...open].filter(([name]) => name.startsWith(`sha256_${baseDiff}-`));
    expect(baseFiles).toHaveLength(1);
    expect(baseFiles[0]![1]).toBe(1); // one descriptor for both mounts
    expect([...open.keys()].some((n) => n.startsWith(`sha256_${topDiffA}-`))).toBe(true);

    // One fetch of each chunk: what both mounts took from the source together is at most the
    // layer once (a fetch brings whole checkpoint spans along), never once per mount.
    const status = await clip(['server', 'status', '--cache-dir', cache(), '--json']);
    expect(status.code, status.stderr).toBe(0);
    const reply = JSON.parse(status.stdout) as { mounts: MountStatus[] };
    expect(reply.mounts).toHaveLength(2);
    const source = reply.mounts.reduce((n, s) => n + s.bytes.source, 0);
    expect(source).toBeGreaterThanOrEqual(BASE_FILE.length);
    expect(source).toBeLessThan(BASE_FILE.length + 1024 * 1024);

    // Unmounting A closes its own layer's file; the shared one stays open for B.
    const u = await clip(['unmount', mntA(), '--cache-dir', cache()]);
    expect(u.code, u.stderr).toBe(0);
    const after = openLayerFiles(pid, cache());
    expect([...after.keys()].some((n) => n.startsWith(`sha256_${topDiffA}-`))).toBe(false);
    expect([...after].filter(([name]) => name.startsWith(`sha256_${baseDiff}-`)).map(([, n]) => n)).toEqual([1]);
    expect((await readFile(join(mntB(), 'usr/lib/libbase.so'))).equals(BASE_FILE)).toBe(true);
  }, 180_000);
});
