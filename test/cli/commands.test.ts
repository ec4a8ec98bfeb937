/**
 * clip index, ls, stat, cat and extract on fixture OCI layouts, in-process, as a user calls them.
 */
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { modeString } from '../../src/cli/actions/ls.js';
import * as F from '../../src/index/format.js';
import { ImageIndex } from '../../src/index/reader.js';
import { buildIndex } from '../../src/index/writer.js';
import { seededBytes } from '../../src/oci/build/index.js';
import { fixture, FIXTURE_NAMES, type FixtureName } from '../support/fixtures/index.js';
import { rec, recordNamed, reseal } from '../index/crafted.js';
import { dir, file, hardlink, metaOf, scanOf } from '../index/layers.js';
import { clip, clipProcess } from './program.js';

let tmp: string;
let cacheDir: string;
let basicIndex: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-cli-'));
  cacheDir = join(tmp, 'cache');
  basicIndex = join(tmp, 'basic.clip');
  const fx = await fixture('basic');
  await clip('index', fx.ref, '-o', basicIndex, '--cache-dir', cacheDir, '--json');
});
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

describe('clip index', () => {
  const indexable = FIXTURE_NAMES.filter((n) => n !== 'hostile' && n !== 'big');
  it.each(indexable)('%s from its OCI layout: a loadable index, reported', async (name: FixtureName) => {
    const fx = await fixture(name);
    const out = join(tmp, `${name}.clip`);
    const { stdout } = await clip('index', fx.ref, '-o', out, '--cache-dir', cacheDir, '--json');
    const report = JSON.parse(stdout.toString()) as Record<string, unknown>;
    const index = await ImageIndex.open(out);
    expect(report).toMatchObject({
      output: out, manifestDigest: index.image.manifestDigest, entries: index.entryCount, layers: index.layers.length,
      indexBytes: (await stat(out)).size, cached: join(cacheDir, 'indexes', `${index.image.manifestDigest.slice(7)}.clip`),
    });
    expect((await readFile(report.cached as string)).equals(await readFile(out))).toBe(true);
    expect(report.share).toBeCloseTo((report.indexBytes as number) / (report.uncompressedBytes as number), 9);
  });

  it('prints where the index went, its entries, layers and its share of the image', async () => {
    const fx = await fixture('overlay');
    const { stdout, stderr } = await clip('index', fx.ref, '--cache-dir', cacheDir);
    const text = stdout.toString();
    expect(text).toMatch(/^indexed oci:.*overlay/m);
    expect(text).toMatch(new RegExp(`index +${cacheDir}/indexes/[0-9a-f]{64}\\.clip`));
    expect(text).toMatch(/entries +\d+ \(\d+ inodes\) in \d+ layers/);
    expect(text).toMatch(/size +[\d.]+ (B|KiB|MiB): [\d.]+ % of the image's/);
    // Not a terminal: plain progress lines, ending with the whole image read.
    expect(stderr).toMatch(/^indexing: .*\(100%\).*layers (\d+)\/\1/m);
  });

  it('refuses the hostile image, naming the hardlink that points outside', async () => {
    const fx = await fixture('hostile');
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining('hard-outside') });
  });

  it('applies --max-inflated and --max-entries per layer, naming the layer, and refuses bad values', async () => {
    const fx = await fixture('basic');
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--max-inflated', '4KiB')).rejects.toMatchObject({
      code: 'EUNSUPPORTED', object: expect.stringMatching(/^sha256:/), message: expect.stringMatching(/more than 4096 bytes, the limit per layer \(--max-inflated\)/),
    });
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--max-entries', '1')).rejects.toMatchObject({
      code: 'EUNSUPPORTED', message: expect.stringMatching(/more than 1 entries, the limit per layer \(--max-entries\)/),
    });
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--max-entries', 'many')).rejects.toMatchObject({ code: 'EINVAL', object: 'many' });
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--max-inflated', '2TiB')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('refuses a crafted index whose directory is an alias of the root (ls -R recursed until the stack overflowed)', async () => {
    const scans = [scanOf([dir('a'), file('h', { size: 20 }), hardlink('h2', 'h')])];
    const b = buildIndex(metaOf(scans), scans);
    const at = rec(b, recordNamed(b, 'h2'));
    b.writeUInt32LE(1, at + F.E_INO);
    b.writeUInt32LE(0o40755, at + F.E_MODE);
    b.writeDoubleLE(0, at + F.E_SIZE);
    b.writeDoubleLE(0, at + F.E_UNION);
    const crafted = join(tmp, 'alias.clip');
    await writeFile(crafted, reseal(b));
    for (const args of [['ls', crafted, '-R'], ['extract', crafted, join(tmp, 'alias-out')]]) {
      await expect(clip(...args)).rejects.toMatchObject({ code: 'ECORRUPT', object: crafted, message: expect.stringMatching(/second name of inode 1/) });
    }
  });

  it('honours --platform for a multi-platform image', async () => {
    const fx = await fixture('multiarch');
    const platforms = Object.keys(fx.platforms ?? {});
    expect(platforms.length).toBeGreaterThan(1);
    const digests = new Set<string>();
    for (const p of platforms) {
      const report = JSON.parse((await clip('index', fx.ref, '--platform', p, '--cache-dir', cacheDir, '--json')).stdout.toString()) as { platform: string; manifestDigest: string };
      expect(report.platform).toBe(p);
      digests.add(report.manifestDigest);
    }
    expect(digests.size).toBe(platforms.length);
  });

  it('honours --span: a smaller span, more checkpoints', async () => {
    const fx = await fixture('basic');
    const small = join(tmp, 'basic-small-span.clip');
    await clip('index', fx.ref, '-o', small, '--span', '64KiB', '--cache-dir', join(tmp, 'span-cache'), '--no-progress');
    const a = await ImageIndex.open(basicIndex);
    const b = await ImageIndex.open(small);
    const cps = (i: ImageIndex): number => i.layers.reduce((n, _l, k) => n + i.checkpointCount(k), 0);
    expect(cps(b)).toBeGreaterThan(cps(a));
  });
});

describe('clip ls / stat (from the index alone)', () => {
  it('lists a directory, long and recursive, following a symlinked path', async () => {
    expect((await clip('ls', basicIndex, '/usr/bin')).stdout.toString().split('\n')).toEqual(expect.arrayContaining(['tool', 'tool-alias', 'su-like', 'ping-like']));
    const long = (await clip('ls', basicIndex, '/bin', '-l')).stdout.toString();
    expect(long).toMatch(/^-rwsr-xr-x +1 +0 +0 +30000 2023-11-14T22:13:20\.000000000Z su-like$/m);
    expect(long).toMatch(/^-rwxr-sr-x +1 +0 +42 +10000 .* sgid-tool$/m);
    const all = JSON.parse((await clip('ls', basicIndex, '/', '-R', '--json')).stdout.toString()) as Array<{ path: string; type: string; rdev?: string; linkTarget?: string }>;
    expect(all.find((e) => e.path === '/dev/null')).toMatchObject({ type: 'char', rdev: '1:3' });
    expect(all.find((e) => e.path === '/etc/localtime')).toMatchObject({ type: 'symlink', linkTarget: '/usr/share/zoneinfo/UTC' });
    expect(all.find((e) => e.path === '/var/fifo')).toMatchObject({ type: 'fifo' });
  });

  it('stats a file: mode, owner, size, mtime in ns, links, inode, layer and offset, xattrs', async () => {
    const index = await ImageIndex.open(basicIndex);
    const ino = index.resolvePath('/usr/bin/ping-like');
    const loc = index.dataLocation(ino)!;
    const report = JSON.parse((await clip('stat', basicIndex, '/usr/bin/ping-like', '--json')).stdout.toString()) as Record<string, unknown>;
    expect(report).toMatchObject({
      path: '/usr/bin/ping-like', type: 'file', mode: '-rwxr-xr-x', perm: 0o755, uid: 0, gid: 0, size: 50_000,
      mtimeNs: '1700000000000000000', nlink: 1, ino, layer: loc.layer, layerDigest: index.layers[loc.layer]!.digest, offset: loc.offset,
      xattrs: { 'security.capability': '0x0100000280200000000000000000000000000000', 'user.comment': 'needs raw sockets' },
    });
    const text = (await clip('stat', basicIndex, 'etc/hostname')).stdout.toString();
    expect(text).toMatch(/Modify: 2023-11-14T22:13:20\.000000005Z \(1700000000000000005 ns\)/);
    const hard = JSON.parse((await clip('stat', basicIndex, '/usr/bin/tool-alias', '--json')).stdout.toString()) as { nlink: number; ino: number };
    expect(hard.nlink).toBe(3);
    expect(hard.ino).toBe(index.resolvePath('/usr/bin/tool'));
  });

  it('names a missing path', async () => {
    await expect(clip('stat', basicIndex, '/no/such')).rejects.toMatchObject({ code: 'ENOTFOUND', object: '/no/such' });
    await expect(clip('ls', basicIndex, '/nope')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('renders mode strings as ls does', () => {
    expect(modeString(0o104755)).toBe('-rwsr-xr-x');
    expect(modeString(0o102644)).toBe('-rw-r-Sr--');
    expect(modeString(0o041777)).toBe('drwxrwxrwt');
    expect(modeString(0o041776)).toBe('drwxrwxrwT');
    expect(modeString(0o120777)).toBe('lrwxrwxrwx');
    expect(modeString(0o060660)).toBe('brw-rw----');
  });
});

describe('clip cat', () => {
  it('prints a file, through a symlinked directory, read lazily from the layout', async () => {
    const own = join(tmp, 'cat-cache');
    expect((await clip('cat', basicIndex, '/etc/hostname', '--cache-dir', own)).stdout.toString()).toBe('clip-basic-2\n');
    const tool = (await clip('cat', basicIndex, '/bin/tool', '--cache-dir', own)).stdout;
    expect(tool.length).toBe(200_000);
    const lib = (await clip('cat', basicIndex, '/usr/lib/libdemo.so', '--cache-dir', own)).stdout;
    expect(lib.equals(seededBytes('basic/lib', 1_500_000, { compressible: 0.7 }))).toBe(true);
    // The disk cache now holds what was read, content-addressed by diff_id.
    expect((await readdir(join(own, 'layers'))).length).toBeGreaterThan(0);
  });

  it('prints nothing for an empty file, and refuses directories and missing paths', async () => {
    expect((await clip('cat', basicIndex, '/etc/empty', '--cache-dir', cacheDir)).stdout.length).toBe(0);
    await expect(clip('cat', basicIndex, '/usr', '--cache-dir', cacheDir)).rejects.toMatchObject({ code: 'EINVAL', object: '/usr', message: expect.stringContaining('directory') });
    await expect(clip('cat', basicIndex, '/dev/null', '--cache-dir', cacheDir)).rejects.toMatchObject({ code: 'EUNSUPPORTED' });
    await expect(clip('cat', basicIndex, '/missing', '--cache-dir', cacheDir)).rejects.toMatchObject({ code: 'ENOTFOUND', object: '/missing' });
  });

  it('as a process: bytes on stdout, exit status 1 and a message naming the path on error', async () => {
    const ok = await clipProcess(['cat', basicIndex, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir]);
    expect(ok.code).toBe(0);
    expect(ok.stdout.equals(seededBytes('basic/lib', 1_500_000, { compressible: 0.7 }))).toBe(true);
    const bad = await clipProcess(['cat', basicIndex, '/etc', '--cache-dir', cacheDir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^clip: \/etc: is a directory/m);
  });
});

describe('clip cat | head', () => {
  it('stops quietly when its reader goes away', async () => {
    const { spawn } = await import('node:child_process');
    const entry = new URL('./clip-entry.ts', import.meta.url).pathname;
    const child = spawn(process.execPath, ['--import', 'tsx', entry, 'cat', basicIndex, '/usr/lib/libdemo.so.1', '--cache-dir', cacheDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => child.stdout.destroy()); // like `head -c 1`
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});

describe('clip extract', () => {
  it('writes the tree, and an image reference is indexed once then taken from the cache', async () => {
    const fx = await fixture('overlay');
    const own = join(tmp, 'extract-cache');
    const first = await clip('extract', fx.ref, join(tmp, 'x1'), '--cache-dir', own, '--json');
    const summary = JSON.parse(first.stdout.toString()) as { files: number; dirs: number };
    expect(summary.files).toBeGreaterThan(0);
    expect(first.stderr).toMatch(/^indexing: /m);
    const cached = await readdir(join(own, 'indexes'));
    expect(cached).toHaveLength(1);
    const second = await clip('extract', fx.ref, join(tmp, 'x2'), '--cache-dir', own, '--json');
    expect(second.stderr).not.toMatch(/^indexing: /m);
    expect(JSON.parse(second.stdout.toString())).toEqual({ ...summary, dir: join(tmp, 'x2') });
    await expect(clip('extract', fx.ref, join(tmp, 'x2'), '--cache-dir', own)).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('not empty') });
  });
});
