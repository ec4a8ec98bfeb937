/**
 * extractTree against `umoci unpack` of the same fixtures (every path, type, mode, owner, size,
 * mtime, link target, device, xattr, content hash, hardlink group), content read through the real
 * storage read path; and against hostile content: nothing is written outside the target.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, renameSync, symlinkSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readlink, lstat, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { scanLayer } from '../../src/archive/scan.js';
import { extractTree, safeName, type LayerReader } from '../../src/fs/extract.js';
import { imageInfoOf, indexedLayerOf } from '../../src/index/meta.js';
import { ImageIndex } from '../../src/index/reader.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { LayoutSource } from '../../src/oci/layout.js';
import { CheckpointSource, openStorage, type Storage } from '../../src/storage/index.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { indexImage } from '../../src/storage/indexer.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, type FixtureName } from '../support/fixtures/index.js';
import { snapshotTree, umociUnpack } from '../support/tools.js';
import { diffTrees } from '../index/tree-compare.js';
import { dir, entry, indexOf } from '../index/layers.js';
import type { ClipError } from '../../src/util/errors.js';

const execFileP = promisify(execFile);

let tmp: string;
const storages: Storage[] = [];
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-extract-'));
});
afterAll(async () => {
  for (const s of storages) await s.close();
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

/** A reader over the real read path: registry-less here, the layout's blobs by range from checkpoints. */
async function readerFor(index: ImageIndex, source: LayoutSource): Promise<LayerReader> {
  const storage = await openStorage({ source: new CheckpointSource(source), cacheDir: join(tmp, `cache-${storages.length}`) });
  storages.push(storage);
  const layers = indexLayers(index);
  return (layer, offset, size) => storage.stream(layers[layer]!, offset, size);
}

describe.skipIf(skipUnlessRoot())('extract equals umoci unpack', () => {
  const names: FixtureName[] = ['basic', 'overlay', 'longnames', 'umoci', 'docker', 'zstd', 'uncompressed'];
  it.each(names)('%s', async (name) => {
    const fx = await fixture(name);
    const source = new LayoutSource(fx.layoutDir, fx.tag);
    const { index } = await indexImage(source);
    const target = join(tmp, `${name}-rootfs`);
    const summary = await extractTree(index, target, await readerFor(index, source));
    const expected = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag!, join(tmp, `${name}-umoci`)));
    const actual = await snapshotTree(target);
    expect(diffTrees(expected, actual, { contents: true })).toEqual([]);
    expect(actual.size).toBe(expected.size);
    expect(summary.skipped).toEqual([]);
    const sizes = new Map([...actual.values()].filter((n) => n.type === 'file').map((n) => [n.ino, n.size]));
    expect(summary.bytes).toBe([...sizes.values()].reduce((a, b) => a + b, 0));
    expect(summary.files).toBe(sizes.size);
    // Directory mtimes are the image's (umoci stamps the directories it makes implicitly with the unpack time).
    for (const [path, node] of actual) {
      if (node.type !== 'dir') continue;
      const a = index.getattr(index.resolvePath(`/${path}`));
      expect(node.mtimeNs, path).toBe((BigInt(a.mtimeSec) * 1_000_000_000n + BigInt(a.mtimeNsec)).toString());
    }
    await rm(join(tmp, `${name}-umoci`), { recursive: true, force: true });
    await rm(target, { recursive: true, force: true });
  });
});

describe('extract target', () => {
  it('refuses a target that is not empty, or is a symlink to a directory', async () => {
    const fx = await fixture('overlay');
    const source = new LayoutSource(fx.layoutDir, fx.tag);
    const { index } = await indexImage(source);
    const full = join(tmp, 'full');
    await mkdir(full);
    await writeFile(join(full, 'x'), 'x');
    await expect(extractTree(index, full, await readerFor(index, source))).rejects.toMatchObject({ code: 'EINVAL', object: full });
    const link = join(tmp, 'link-to-dir');
    await mkdir(join(tmp, 'empty'));
    await symlink(join(tmp, 'empty'), link);
    await expect(extractTree(index, link, await readerFor(index, source))).rejects.toMatchObject({ code: 'EINVAL', object: link });
    expect(await readdir(join(tmp, 'empty'))).toEqual([]);
  });

  it('fails naming the file when the read path gives short content or an error', async () => {
    const fx = await fixture('overlay');
    const { index } = await indexImage(new LayoutSource(fx.layoutDir, fx.tag));
    const short: LayerReader = async function* () { yield Buffer.from('x'); };
    await expect(extractTree(index, join(tmp, 'short'), short)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/short\/.+: wrote 1 bytes of \d+/) });
    // eslint-disable-next-line require-yield
    const failing: LayerReader = async function* () { throw new Error('registry unreachable'); };
    await expect(extractTree(index, join(tmp, 'failing'), failing)).rejects.toThrow('registry unreachable');
  });

  it.skipIf(skipUnlessRoot())('makes FIFOs and devices whose names are not UTF-8, and leaves no scratch behind', async () => {
    const fifo = entry('x', { type: 'fifo', mode: 0o640 });
    fifo.path = 'fifo-\xe9'; // the byte 0xe9 alone: not UTF-8
    const dev = entry('y', { type: 'char', mode: 0o600, devMajor: 1, devMinor: 3 });
    dev.path = 'null-\xff';
    const target = join(tmp, 'special-names');
    const summary = await extractTree(indexOf([fifo, dev]), target, () => (async function* () {})());
    expect(summary).toMatchObject({ fifos: 1, devices: 1 });
    const at = (name: string): Buffer => Buffer.concat([Buffer.from(`${target}/`), Buffer.from(name, 'latin1')]);
    expect((await lstat(at('fifo-\xe9'))).isFIFO()).toBe(true);
    const st = await lstat(at('null-\xff'));
    expect([st.isCharacterDevice(), st.rdev]).toEqual([true, (1 << 8) | 3]);
    expect((await readdir(target, { encoding: 'buffer' })).map((n) => n.toString('hex')).sort())
      .toEqual([Buffer.from('fifo-\xe9', 'latin1'), Buffer.from('null-\xff', 'latin1')].map((n) => n.toString('hex')).sort());
  });

  it('fails with one clear error naming the path: a missing parent, a name or a path too long', async () => {
    const none = (): AsyncIterable<Uint8Array> => (async function* () {})();
    const one = indexOf([entry('x', { type: 'fifo' })]);
    const missing = join(tmp, 'no-such-parent', 'rootfs');
    await expect(extractTree(one, missing, none)).rejects.toMatchObject({ code: 'ENOTFOUND', object: join(tmp, 'no-such-parent') });
    const long = join(tmp, 'n'.repeat(300));
    await expect(extractTree(one, long, none)).rejects.toMatchObject({ code: 'EIO', object: long, message: expect.stringContaining('name or path too long') });
    // Directories 20 deep of 250-byte names: more than PATH_MAX (4096) below the target.
    const parts = Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(250, 'd'));
    const deep = indexOf(parts.map((_, i) => dir(parts.slice(0, i + 1).join('/'))));
    const target = join(tmp, 'deep');
    const err = await extractTree(deep, target, none).then(() => undefined, (e: unknown) => e as ClipError);
    expect(err).toMatchObject({ code: 'EIO', message: expect.stringContaining('(ENAMETOOLONG)') });
    expect(err?.object?.startsWith(`${target}/${parts[0]}/`)).toBe(true);
    await expect(lstat(target)).rejects.toMatchObject({ code: 'ENOENT' }); // made by the run, removed with what it staged
  });

  it.skipIf(skipUnlessRoot())('a device it may not make (not root, owners asked for) fails naming the entry, and leaves nothing', async () => {
    const open = join(tmp, 'open-to-nobody');
    await mkdir(open);
    await chmod(open, 0o777);
    await chmod(tmp, 0o711);
    const target = join(open, 'rootfs');
    const src = (rel: string): string => JSON.stringify(fileURLToPath(new URL(rel, import.meta.url)));
    const script = `import { extractTree } from ${src('../../src/fs/extract.ts')}; import { entry, indexOf } from ${src('../index/layers.ts')};
      const index = indexOf([entry('dev-null', { type: 'char', mode: 0o666, devMajor: 1, devMinor: 3 })]);
      extractTree(index, ${JSON.stringify(target)}, () => (async function* () {})(), { sameOwner: true })
        .then(() => console.log('done'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })));`;
    const { stdout } = await execFileP(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: 65534, gid: 65534 });
    expect(JSON.parse(stdout)).toEqual({ code: 'EIO', message: `${target}/dev-null: mknod failed: Operation not permitted` });
    expect(await readdir(open)).toEqual([]);
  });

  it('refuses names that are not one safe path component', () => {
    for (const bad of ['', '.', '..', 'a/b', '../x', 'nul\0']) {
      expect(() => safeName(Buffer.from(bad), '/dir'), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'EUNSAFE', object: '/dir' }));
    }
    expect(safeName(Buffer.from('..a'), '/')).toBe('..a');
    expect(safeName(Buffer.from([0x61, 0xff]), '/')).toBe('a\xff'); // not UTF-8: kept as bytes
  });
});

/** The hostile layer indexed without its hardlink to outside (which the index refuses outright). */
async function hostileIndex(): Promise<{ index: ImageIndex; source: LayoutSource; bytes: Buffer }> {
  const fx = await fixture('hostile');
  const source = new LayoutSource(fx.layoutDir, fx.tag);
  const img = await source.resolve();
  const l = img.layers[0]!;
  const scan = await scanLayer(await source.openBlob(l.descriptor), { compression: l.compression, name: l.descriptor.digest });
  const b = new IndexBuilder(imageInfoOf(img));
  b.addLayer(indexedLayerOf(l, scan), { ...scan, entries: scan.entries.filter((e) => e.type !== 'hardlink') });
  const bytes = b.build();
  return { index: new ImageIndex(bytes, 'hostile.clip'), source, bytes };
}

/** Every path under `dir`, relative, never following a symlink. */
async function listAll(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...(await listAll(join(dir, e.name), rel)));
  }
  return out.sort();
}

describe.skipIf(skipUnlessRoot())('hostile content', () => {
  it('keeps every escape attempt inside the target: symlinks made as links, never followed', async () => {
    const { index, source } = await hostileIndex();
    const jail = join(tmp, 'jail');
    const target = join(jail, 'a', 'b', 'c', 'rootfs');
    await mkdir(join(jail, 'a', 'b', 'c'), { recursive: true });
    await extractTree(index, target, await readerFor(index, source));
    // Nothing beside the target at any level up to the jail ("../../../../" from rootfs lands in the jail).
    const inside = await listAll(target);
    expect(inside).toEqual(expect.arrayContaining(['evil', 'up', 'etc/clip-through-symlink', 'clip-through-relative-symlink', 'safe.txt', 'dot/slash/name']));
    expect(await listAll(jail)).toEqual((await listAll(target)).map((p) => join('a/b/c/rootfs', p)).concat(['a', 'a/b', 'a/b/c', 'a/b/c/rootfs']).sort());
    expect(await readlink(join(target, 'evil'))).toBe('/etc');
    expect(await readlink(join(target, 'up'))).toBe('../../../../');
    expect((await lstat(join(target, 'etc'))).isDirectory()).toBe(true);
    expect(await readFile(join(target, 'etc/clip-through-symlink'), 'utf8')).toBe('written through a symlink\n');
    expect(await readFile(join(target, 'clip-through-relative-symlink'), 'utf8')).toBe('written through a relative symlink\n');
    await expect(lstat('/etc/clip-through-symlink')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(lstat('/etc/clip-escape')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses an index whose entry name holds "/" or "..": it does not even load', async () => {
    const { bytes } = await hostileIndex();
    // Rename "safe.txt" to "../a.txt" in the string heap and fix the checksum: a forged index.
    // The index's load-time checks (src/index/validate.ts) refuse it before extract could see it.
    const forged = Buffer.from(bytes);
    const at = forged.indexOf('safe.txt');
    expect(at).toBeGreaterThan(0);
    forged.write('../a.txt', at, 'latin1');
    createHash('sha256').update(forged.subarray(0, forged.length - 32)).digest().copy(forged, forged.length - 32);
    expect(() => new ImageIndex(forged, 'forged.clip')).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'forged.clip', message: expect.stringMatching(/name holds "\/"/) }));
  });
});

/**
 * Another user who can write `dirs` (the target, or its parent) and, at every chance (between the
 * pieces of content written), renames each directory there and puts a symlink to `victim` in its place.
 */
function racer(dirs: string[], victim: string): { onBytes: () => void; swapped: string[] } {
  const swapped: string[] = [];
  const onBytes = (): void => {
    for (const d of dirs) {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (!e.isDirectory() || e.name.endsWith('.moved') || p === victim) continue;
        renameSync(p, `${p}.moved`);
        symlinkSync(victim, p);
        swapped.push(e.name);
      }
    }
  };
  return { onBytes, swapped };
}

describe('another user racing the extraction', () => {
  async function victimDir(name: string): Promise<string> {
    const victim = join(tmp, name);
    await mkdir(victim, { mode: 0o755 });
    await chmod(victim, 0o755);
    return victim;
  }
  const untouched = async (victim: string): Promise<void> => {
    expect(await readdir(victim)).toEqual([]);
    expect((await lstat(victim)).mode & 0o7777).toBe(0o755);
  };

  it('swapping the directories in a target they own for symlinks writes nothing through them; the tree is whole', async () => {
    const fx = await fixture('basic');
    const source = new LayoutSource(fx.layoutDir, fx.tag);
    const { index } = await indexImage(source);
    const victim = await victimDir('victim-1');
    const target = join(tmp, 'theirs');
    await mkdir(target);
    await chmod(target, 0o777); // theirs: anyone may rename in it
    const race = racer([target], victim);
    await extractTree(index, target, await readerFor(index, source), { onBytes: race.onBytes, sameOwner: false });
    expect(race.swapped.length).toBeGreaterThan(0);
    await untouched(victim);
    const clean = join(tmp, 'theirs-clean');
    await extractTree(index, clean, await readerFor(index, source), { sameOwner: false });
    const got = await snapshotTree(target);
    for (const name of race.swapped) {
      got.delete(name); // their symlink, and the (empty) directory they moved aside
      got.delete(`${name}.moved`);
    }
    expect(diffTrees(await snapshotTree(clean), got, { contents: true })).toEqual([]);
  });

  it('swapping the target itself in a parent they can write: nothing written through it, and the extraction fails saying so', async () => {
    const fx = await fixture('basic');
    const source = new LayoutSource(fx.layoutDir, fx.tag);
    const { index } = await indexImage(source);
    const victim = await victimDir('victim-2');
    const parent = join(tmp, 'shared');
    await mkdir(parent);
    await chmod(parent, 0o777);
    const race = racer([parent], victim);
    await expect(extractTree(index, join(parent, 'rootfs'), await readerFor(index, source), { onBytes: race.onBytes, sameOwner: false }))
      .rejects.toMatchObject({ code: 'EUNSAFE', object: join(parent, 'rootfs') });
    expect(race.swapped).toEqual(['rootfs']);
    await untouched(victim);
  });
});
