/**
 * clip index, ls, stat, cat and extract on fixture OCI layouts, in-process, as a user calls them.
 */
import { chmod, chown, mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { modeString } from '../../src/cli/actions/ls.js';
import * as F from '../../src/index/format.js';
import { ImageIndex } from '../../src/index/reader.js';
import { buildIndex } from '../../src/index/writer.js';
import { seededBytes } from '../../src/oci/build/index.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, FIXTURE_NAMES, type FixtureName } from '../support/fixtures/index.js';
import { rec, recordNamed, reseal } from '../index/crafted.js';
import { dir, entry, file, hardlink, metaOf, scanOf } from '../index/layers.js';
import { clip, clipProcess } from './program.js';

/** The uid and gid of nobody, for what an unprivileged user sees. */
const NOBODY = 65534;

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

  it('does not read an image indexed before again, unless --force', async () => {
    const fx = await fixture('overlay');
    const own = join(tmp, 'reuse-cache');
    const first = JSON.parse((await clip('index', fx.ref, '--cache-dir', own, '--json')).stdout.toString()) as { reused: boolean; cached: string };
    expect(first.reused).toBe(false);
    const again = await clip('index', fx.ref, '--cache-dir', own, '-o', join(tmp, 'reused.clip'));
    expect(again.stdout.toString()).toMatch(/^already indexed: oci:.*overlay.*; --force reads it again$/m);
    expect(again.stderr).toBe(''); // no progress: nothing was read
    expect((await readFile(join(tmp, 'reused.clip'))).equals(await readFile(first.cached))).toBe(true);
    const forced = JSON.parse((await clip('index', fx.ref, '--cache-dir', own, '--json', '--force')).stdout.toString()) as { reused: boolean };
    expect(forced.reused).toBe(false);
  });

  it('prints where the index went, its entries, layers and its share of the image', async () => {
    const fx = await fixture('overlay');
    const { stdout, stderr } = await clip('index', fx.ref, '--cache-dir', cacheDir, '--force');
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
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--force', '--max-inflated', '4KiB')).rejects.toMatchObject({
      code: 'EUNSUPPORTED', object: expect.stringMatching(/^sha256:/), message: expect.stringMatching(/more than 4096 bytes, the limit per layer \(--max-inflated\)/),
    });
    await expect(clip('index', fx.ref, '--cache-dir', cacheDir, '--no-progress', '--force', '--max-entries', '1')).rejects.toMatchObject({
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

// eslint-disable-next-line no-control-regex
const CONTROL_BUT_NEWLINE = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;

describe('names with control characters', () => {
  // A terminal title sequence, a line break, DEL and a C1 CSI (U+009B) in names, a link target and an xattr name.
  const evil = 'evil\x1b]0;pwned\x07';
  const names = [evil, 'new\nline', 'del\x7f', 'csi\u009b2J'];
  let file: string;
  beforeAll(async () => {
    const entries = [
      ...names.map((n) => entry(n, { type: 'file', size: 0, xattrs: new Map([['user.\x1b[31m', Buffer.from('v')]]) })),
      entry('link', { type: 'symlink', linkTarget: '\x1b[2J' }),
    ];
    const scans = [scanOf(entries)];
    file = join(tmp, 'controls.clip');
    await writeFile(file, buildIndex(metaOf(scans), scans));
  });

  it('ls and stat print them escaped as \\xNN; --json keeps them as JSON escapes of the same names', async () => {
    const shown = ['evil\\x1b]0;pwned\\x07', 'new\\x0aline', 'del\\x7f', 'csi\\xc2\\x9b2J'];
    expect((await clip('ls', file, '/')).stdout.toString().split('\n').filter(Boolean).sort()).toEqual([...shown, 'link'].sort());
    const long = (await clip('ls', file, '/', '-l')).stdout.toString();
    expect(long).toMatch(/ link -> \\x1b\[2J\n/);
    expect(long).toMatch(/ evil\\x1b\]0;pwned\\x07\n/);
    const stat = (await clip('stat', file, `/${evil}`)).stdout.toString();
    expect(stat).toContain('  File: /evil\\x1b]0;pwned\\x07\n');
    expect(stat).toContain(' Xattr: user.\\x1b[31m=v\n');
    for (const out of [long, stat]) expect(out).not.toMatch(CONTROL_BUT_NEWLINE);
    const json = (await clip('ls', file, '/', '--json')).stdout.toString();
    expect(json).not.toMatch(CONTROL_BUT_NEWLINE);
    expect((JSON.parse(json) as Array<{ name: string }>).map((e) => e.name).sort()).toEqual([...names, 'link'].sort());
  });

  it('an error naming one is one line, escaped', async () => {
    const r = await clipProcess(['stat', file, `/${evil}/x`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^clip: .*evil\\x1b\]0;pwned\\x07.*\n$/);
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

describe('clip cat over a tampered disk cache', () => {
  it('never prints bytes changed on disk after they were cached: they fail verification and are fetched again', async () => {
    const own = join(tmp, 'tamper-cache');
    const want = seededBytes('basic/lib', 1_500_000, { compressible: 0.7 });
    expect((await clipProcess(['cat', basicIndex, '/usr/lib/libdemo.so', '--cache-dir', own])).stdout.equals(want)).toBe(true);
    // Flip one byte in every 64 KiB of every cached layer's data.
    let flipped = 0;
    for (const name of (await readdir(join(own, 'layers'))).filter((n) => /^sha256_[0-9a-f-]+$/.test(n))) {
      const file = join(own, 'layers', name);
      const { uncompressedSize } = JSON.parse(await readFile(`${file}.json`, 'utf8')) as { uncompressedSize: number };
      const fh = await open(file, 'r+');
      const b = Buffer.alloc(1);
      for (let at = 100; at < uncompressedSize; at += 65_536, flipped++) {
        await fh.read(b, 0, 1, at);
        b[0]! ^= 0x5a;
        await fh.write(b, 0, 1, at);
      }
      await fh.close();
    }
    expect(flipped).toBeGreaterThan(20);
    const again = await clipProcess(['cat', basicIndex, '/usr/lib/libdemo.so', '--cache-dir', own, '--log-level', 'warn']);
    expect(again.code).toBe(0);
    expect(again.stdout.equals(want)).toBe(true);
    expect(again.stderr).toMatch(/cached chunk failed verification/);
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

  it.skipIf(skipUnlessRoot())('as a user who is not root: read-only directories (0555, as /proc) at the top and below are moved into place', async () => {
    const entries = [dir('proc', { mode: 0o555 }), dir('usr'), dir('usr/share', { mode: 0o555 }), entry('usr/share/empty', { size: 0 })];
    const scans = [scanOf(entries)];
    const theirs = join(tmp, 'nobody');
    await mkdir(theirs);
    await chmod(tmp, 0o711);
    // Theirs, as a home directory is: clip refuses a cache directory under a directory others can write.
    await chown(theirs, NOBODY, NOBODY);
    const file = join(theirs, 'readonly.clip');
    await writeFile(file, buildIndex(metaOf(scans), scans), { mode: 0o644 });
    const target = join(theirs, 'rootfs');
    const r = await clipProcess(['extract', file, target, '--cache-dir', join(theirs, 'cache'), '--no-progress'], {}, { uid: NOBODY, gid: NOBODY });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const mode = async (p: string): Promise<[number, number]> => [(await stat(join(target, p))).mode & 0o7777, (await stat(join(target, p))).uid];
    expect(await Promise.all(['proc', 'usr', 'usr/share', '.'].map(mode))).toEqual([[0o555, NOBODY], [0o755, NOBODY], [0o555, NOBODY], [0o755, NOBODY]]);
  });
});
