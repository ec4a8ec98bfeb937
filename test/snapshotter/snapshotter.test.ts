/**
 * The snapshotter's own semantics, without containerd: the overlayfs snapshotter's mounts for
 * active, view and committed snapshots, the errors containerd relies on (AlreadyExists, NotFound,
 * FailedPrecondition), labels, usage, filters, cleanup, and metadata that survives a reopen.
 * Real directories and a real LMDB store; overlay mounts made by mount(8) when root.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SnapshotError } from '../../src/snapshotter/errors.js';
import { parseFilters } from '../../src/snapshotter/filters.js';
import { ImageMounts } from '../../src/snapshotter/image-mounts.js';
import { chainIds, RemoteImages } from '../../src/snapshotter/remote.js';
import { RESTORE_MOUNTS, Snapshotter, type Mount } from '../../src/snapshotter/snapshotter.js';
import { SnapshotStore } from '../../src/snapshotter/store.js';
import { isRoot, skipUnlessRoot } from '../support/env.js';

const exec = promisify(execFile);

let root: string;
let store: SnapshotStore;
let sn: Snapshotter;

function open(): Snapshotter {
  store = new SnapshotStore(join(root, 'metadata.lmdb'));
  const common = { cacheDir: join(root, 'cache') };
  return new Snapshotter(root, store, new RemoteImages(common), new ImageMounts({ root, ...common }));
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'clip-sn-'));
  sn = open();
  await sn.restore();
});
afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

const kindOf = async (p: Promise<unknown> | (() => unknown)): Promise<string> => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (err instanceof SnapshotError) return err.kind;
    throw err;
  }
  return 'ok';
};
const opt = (m: Mount, name: string): string | undefined => m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);

describe('the overlayfs behaviour', () => {
  it('gives bind and overlay mounts as containerd\'s overlayfs snapshotter does', async () => {
    const [first] = await sn.prepare('a', '', {});
    expect(first).toMatchObject({ type: 'bind', options: ['rw', 'rbind'] });
    await writeFile(join(first!.source, 'one'), 'layer one\n');
    await sn.commit('A', 'a', { 'x.y': 'z' });
    expect(sn.stat('A')).toMatchObject({ name: 'A', parent: '', kind: 'COMMITTED', labels: { 'x.y': 'z' } });
    expect(await kindOf(() => sn.stat('a'))).toBe('NotFound');

    const [second] = await sn.prepare('b', 'A', {});
    expect(second!.type).toBe('overlay');
    expect(opt(second!, 'lowerdir')).toBe(first!.source);
    await writeFile(join(opt(second!, 'upperdir')!, 'two'), 'layer two\n');
    await sn.commit('B', 'b', {});

    const [view] = await sn.view('v', 'A', {});
    expect(view).toEqual({ type: 'bind', source: first!.source, target: '', options: ['ro', 'rbind'] });
    const [top] = await sn.prepare('c', 'B', {});
    expect(opt(top!, 'lowerdir')!.split(':')).toEqual([opt(second!, 'upperdir'), first!.source]);
    expect(await sn.mounts('c')).toEqual([top]);

    const usage = await sn.usage('A');
    expect(usage.inodes).toBe(2);
    expect(usage.size).toBeGreaterThan(0);
    if (isRoot) {
      const mnt = join(root, 'mnt');
      await mkdir(mnt);
      await exec('mount', ['-t', 'overlay', 'overlay', '-o', top!.options.join(','), mnt]);
      try {
        await writeFile(join(mnt, 'three'), 'written\n');
        expect((await readdir(mnt)).sort()).toEqual(['one', 'three', 'two']);
        expect(await readFile(join(mnt, 'one'), 'utf8')).toBe('layer one\n');
      } finally {
        await exec('umount', [mnt]);
      }
      expect(await readFile(join(opt(top!, 'upperdir')!, 'three'), 'utf8')).toBe('written\n');
    }
  });

  it('answers the errors containerd relies on', async () => {
    await sn.prepare('a', '', {});
    expect(await kindOf(sn.prepare('a', '', {}))).toBe('AlreadyExists');
    expect(await kindOf(sn.prepare('x', 'missing', {}))).toBe('NotFound');
    expect(await kindOf(sn.prepare('x', 'a', {}))).toBe('InvalidArgument'); // an active parent
    await sn.commit('A', 'a', {});
    expect(await kindOf(sn.commit('A2', 'A', {}))).toBe('FailedPrecondition');
    await sn.prepare('b', 'A', {});
    expect(await kindOf(sn.commit('A', 'b', {}))).toBe('AlreadyExists');
    expect(await kindOf(sn.remove('A'))).toBe('FailedPrecondition'); // it has a child
    expect(await kindOf(sn.remove('nope'))).toBe('NotFound');
    expect(await kindOf(sn.mounts('A'))).toBe('FailedPrecondition');
    // A target that exists already is AlreadyExists, as the unpacker expects.
    expect(await kindOf(sn.prepare('extract-1 A', '', { 'containerd.io/snapshot.ref': 'A' }))).toBe('AlreadyExists');
    // A target label without an image to serve it from: an ordinary snapshot.
    expect((await sn.prepare('extract-2 C', 'A', { 'containerd.io/snapshot.ref': 'C' }))[0]!.type).toBe('overlay');
    await sn.remove('b');
    await sn.remove('extract-2 C');
    await sn.remove('A');
    expect(sn.list([])).toEqual([]);
    expect(await readdir(join(root, 'snapshots'))).toEqual([]);
  });

  it('updates labels by field path, lists with containerd filters, and keeps everything across a reopen', async () => {
    await sn.prepare('a', '', { keep: '1', drop: '2' });
    await sn.commit('A', 'a', {});
    await sn.prepare('b', 'A', { 'containerd.io/snapshot.ref': 'sha256:abc' });
    expect(sn.update({ name: 'A', labels: { add: '3' } }, ['labels.add', 'labels.drop']).labels).toEqual({ keep: '1', add: '3' });
    expect(sn.update({ name: 'A', labels: { only: '4' } }, []).labels).toEqual({ only: '4' });
    expect(await kindOf(() => sn.update({ name: 'A', labels: {} }, ['parent']))).toBe('InvalidArgument');
    const names = (f: string[]): string[] => sn.list(f).map((i) => i.name).sort();
    expect(names(['kind==committed'])).toEqual(['A']);
    expect(names(['parent=="A"'])).toEqual(['b']);
    expect(names(['labels."containerd.io/snapshot.ref"==sha256:abc,parent=="A"'])).toEqual(['b']);
    expect(names(['labels."containerd.io/snapshot.ref"==sha256:abc,parent=="B"'])).toEqual([]);
    expect(names(['name==A', 'name==b'])).toEqual(['A', 'b']);
    expect(names(['labels.only'])).toEqual(['A']);
    expect(names(['name~=^[a-z]$'])).toEqual(['b']);
    expect(names(['name!=A'])).toEqual(['b']);

    const before = sn.list([]);
    await store.close();
    sn = open();
    await sn.restore();
    expect(sn.list([])).toEqual(before);
    expect((await sn.prepare('c', 'A', {}))[0]!.type).toBe('overlay'); // ids go on from where they were
    expect(new Set(sn.list([]).map((i) => i.name))).toEqual(new Set(['A', 'b', 'c']));
  });

  it('Cleanup removes directories no snapshot owns', async () => {
    await sn.prepare('a', '', {});
    await mkdir(join(root, 'snapshots', '999', 'fs'), { recursive: true });
    await sn.cleanup();
    expect(await readdir(join(root, 'snapshots'))).toEqual(['1']);
  });
});

describe('containerd\'s conventions', () => {
  it('chain IDs are identity.ChainIDs over the diff_ids', () => {
    const d1 = `sha256:${'1'.repeat(64)}`;
    const d2 = `sha256:${'2'.repeat(64)}`;
    const ids = chainIds([d1, d2]);
    expect(ids[0]).toBe(d1);
    // sha256("sha256:111… sha256:222…"), as containerd's identity package computes it.
    expect(ids[1]).toBe('sha256:' + createHash('sha256').update(`${d1} ${d2}`).digest('hex'));
  });

  it('filters with bad quoting are refused', () => {
    expect(() => parseFilters(['labels."unterminated==x'])).toThrow(SnapshotError);
    expect(() => parseFilters(['name=="\\q"'])).toThrow(SnapshotError);
  });
});

describe.skipIf(skipUnlessRoot())('restore on start', () => {
  it('mounts every pulled image again, several at once, each serving its files', async () => {
    // In a process of its own: the node's server it starts must find tsx (which a vitest worker's
    // module resolution does not give it).
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./restore-child.ts', import.meta.url)), root], { timeout: 110_000 });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { images: number; peak: number; served: number[]; unmounted: boolean; serverGone: boolean };
    expect(out.images).toBe(3);
    expect(out.peak).toBe(Math.min(RESTORE_MOUNTS, out.images));
    expect(out.served).toHaveLength(3);
    for (const entries of out.served) expect(entries).toBeGreaterThan(0);
    expect(out.unmounted).toBe(true);
    expect(out.serverGone).toBe(true);
  }, 120_000);
});
