import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarWalker, type TarWalkerOptions } from '../../src/archive/tar-walker.js';
import type { TarEntry } from '../../src/archive/types.js';
import { isClipError } from '../../src/util/errors.js';
import { isRoot } from '../support/env.js';
import { asBytePath, END, file, header, pax, setChecksum } from './tar-builder.js';

function walk(raw: Buffer, pieces = [raw.length], opts: TarWalkerOptions = {}): TarEntry[] {
  const w = new TarWalker(opts);
  const out: TarEntry[] = [];
  let pos = 0;
  let i = 0;
  while (pos < raw.length) {
    const n = pieces[i++ % pieces.length]!;
    out.push(...w.push(raw.subarray(pos, pos + n)));
    pos += n;
  }
  w.end();
  return out;
}

function catchClip(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (isClipError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a ClipError');
}

let dir: string;
const longName = `${'deep/'.repeat(30)}a-file-with-a-rather-long-name.txt`;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tar-'));
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, path.dirname(longName)), { recursive: true });
  fs.writeFileSync(path.join(root, longName), 'long name content\n');
  fs.writeFileSync(path.join(root, 'small.txt'), 'hello\n');
  fs.writeFileSync(path.join(root, 'big.bin'), Buffer.alloc(70_000, 'xyz'));
  fs.chmodSync(path.join(root, 'big.bin'), 0o4755);
  fs.linkSync(path.join(root, 'small.txt'), path.join(root, 'hard.txt'));
  fs.symlinkSync(`../${'target/'.repeat(25)}t`, path.join(root, 'link'));
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  if (isRoot) execFileSync('mknod', [path.join(root, 'null'), 'c', '1', '3']);
  execFileSync('touch', ['-d', '2020-01-02 03:04:05.123456789', path.join(root, 'small.txt')]);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.each(['ustar', 'gnu', 'pax'])('GNU tar --format=%s', (format) => {
  let raw: Buffer;
  let entries: TarEntry[];
  beforeAll(() => {
    const names = ['small.txt', 'big.bin', 'hard.txt', 'link', 'fifo', ...(isRoot ? ['null'] : []), 'deep'];
    // ustar cannot store the long symlink target; leave it out there.
    const list = format === 'ustar' ? names.filter((n) => n !== 'link') : names;
    raw = execFileSync('tar', ['-C', path.join(dir, 'root'), `--format=${format}`, '-cf', '-', ...list], { maxBuffer: 1 << 26 });
    entries = walk(raw);
  });

  it('lists every entry that tar lists, with normalised names', () => {
    const listed = execFileSync('tar', ['-tf', '-'], { input: raw }).toString().trim().split('\n').map((p) => p.replace(/\/$/, ''));
    expect(entries.map((e) => e.path)).toEqual(listed);
  });

  it('records offsets: slicing the raw tar at dataOffset gives the file contents', () => {
    for (const e of entries.filter((x) => x.type === 'file')) {
      const onDisk = fs.readFileSync(path.join(dir, 'root', e.path));
      expect(raw.subarray(e.dataOffset, e.dataOffset + e.size).equals(onDisk)).toBe(true);
      expect(e.headerOffset).toBeLessThan(e.dataOffset);
      expect(raw.subarray(e.dataOffset - 512, e.dataOffset).toString('latin1', 257, 262)).toBe('ustar');
    }
    const long = entries.find((e) => e.path === longName)!;
    expect(long.size).toBe(18);
    // the long name's own extension blocks come first and belong to the entry
    if (format !== 'ustar') expect(long.dataOffset - long.headerOffset).toBeGreaterThan(512);
  });

  it('keeps types, modes, links and times', () => {
    const by = new Map(entries.map((e) => [e.path, e]));
    expect(by.get('big.bin')).toMatchObject({ type: 'file', mode: 0o4755, size: 70_000 });
    expect(by.get('hard.txt')).toMatchObject({ type: 'hardlink', linkTarget: 'small.txt', size: 0 });
    expect(by.get('fifo')?.type).toBe('fifo');
    expect(by.get('deep')?.type).toBe('dir');
    if (format !== 'ustar') expect(by.get('link')).toMatchObject({ type: 'symlink', linkTarget: `../${'target/'.repeat(25)}t` });
    if (isRoot) expect(by.get('null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3 });
    const small = by.get('small.txt')!;
    expect(small.mtimeSec).toBe(Math.floor(Date.parse('2020-01-02T03:04:05Z') / 1000) + new Date().getTimezoneOffset() * 60);
    expect(small.mtimeNsec).toBe(format === 'pax' ? 123456789 : 0);
  });

  it('gives the same entries whatever the chunking', () => {
    for (const pieces of [[1], [7, 1000], [511, 513], [4096]]) expect(walk(raw, pieces)).toEqual(entries);
  });
});

describe('hand-built archives', () => {
  it('reads PAX path, linkpath, size, uid/gid, names, mtime and binary xattrs', () => {
    const cap = Buffer.from([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xff, 0]);
    const raw = Buffer.concat([
      pax([['path', 'pax/ünïcode name'], ['uid', '70000'], ['gid', '80000'], ['uname', 'alice'], ['gname', 'staff'],
        ['mtime', '1700000000.5'], ['SCHILY.xattr.security.capability', cap], ['SCHILY.xattr.user.note', 'a=b\nc']]),
      file('short', 'data'),
      pax([['linkpath', 'pax/ünïcode name']]),
      header({ name: 'hl', type: '1', linkname: 'ignored' }),
      END,
    ]);
    const [a, b] = walk(raw);
    expect(a).toMatchObject({ path: asBytePath('pax/ünïcode name'), uid: 70000, gid: 80000, uname: 'alice', gname: 'staff', mtimeSec: 1700000000, mtimeNsec: 500000000, size: 4, headerOffset: 0 });
    expect(a!.xattrs.get('security.capability')).toEqual(cap);
    expect(a!.xattrs.get('user.note')?.toString()).toBe('a=b\nc');
    expect(raw.subarray(a!.dataOffset, a!.dataOffset + 4).toString()).toBe('data');
    expect(b).toMatchObject({ type: 'hardlink', linkTarget: asBytePath('pax/ünïcode name') });
  });

  it('PAX size overrides the header size and decides where the next header is', () => {
    const body = Buffer.alloc(1000, 'q');
    const raw = Buffer.concat([pax([['size', '1000']]), header({ name: 'f', size: 0 }), body, Buffer.alloc(24), file('next', 'n'), END]);
    const [f, next] = walk(raw);
    expect(f!.size).toBe(1000);
    expect(next!.path).toBe('next');
  });

  it('applies global PAX headers to later entries, local ones override, empty values delete', () => {
    const raw = Buffer.concat([
      pax([['uname', 'global'], ['gid', '7']], 'g'),
      file('a', 'x'),
      pax([['uname', 'local']]),
      file('b', 'y'),
      pax([['gid', '']], 'g'),
      file('c', 'z', { gid: 3 }),
      END,
    ]);
    const [a, b, c] = walk(raw);
    expect([a!.uname, a!.gid]).toEqual(['global', 7]);
    expect([b!.uname, b!.gid]).toEqual(['local', 7]);
    expect([c!.uname, c!.gid]).toEqual(['global', 3]);
    expect(a!.headerOffset).toBe(1024); // the global header is not part of the entry
  });

  it('reads GNU base-256 numbers', () => {
    const h = header({ name: 'f', size: 3 });
    h.fill(0, 108, 116);
    h[108] = 0x80;
    h.writeUIntBE(5_000_000_000, 110, 6); // uid beyond the octal field
    h.fill(0xff, 136, 148); // mtime -1
    setChecksum(h);
    const [e] = walk(Buffer.concat([h, Buffer.from('abc'), Buffer.alloc(509), END]));
    expect(e).toMatchObject({ uid: 5_000_000_000, mtimeSec: -1, size: 3 });
  });

  it('normalises paths and neutralises escapes by clamping at the root (the default)', () => {
    const raw = Buffer.concat([
      header({ name: './', type: '5', mode: 0o755 }),
      file('./a//b/', 'x'),
      file('/abs/x', 'x'),
      file('../../etc/passwd', 'x'),
      file('a/../../b', 'x'),
      header({ name: 'h', type: '1', linkname: '../../etc/shadow' }),
      END,
    ]);
    expect(walk(raw).map((e) => [e.path, e.linkTarget])).toEqual([['', ''], ['a/b', ''], ['abs/x', ''], ['etc/passwd', ''], ['b', ''], ['h', 'etc/shadow']]);
  });

  it('rejects escaping paths with EUNSAFE when asked to', () => {
    for (const name of ['../x', 'a/../../x']) {
      const raw = Buffer.concat([file(name, 'x'), END]);
      expect(catchClip(() => walk(raw, undefined, { unsafePaths: 'reject', name: 'sha256:layer' }))).toMatchObject({ code: 'EUNSAFE', message: expect.stringContaining('sha256:layer') });
    }
    const link = Buffer.concat([header({ name: 'h', type: '1', linkname: '../x' }), END]);
    expect(catchClip(() => walk(link, undefined, { unsafePaths: 'reject' })).code).toBe('EUNSAFE');
    expect(catchClip(() => walk(Buffer.concat([file('..', 'x'), END]))).code).toBe('EUNSAFE');
  });

  it('rejects a bad checksum with ECORRUPT naming the offset', () => {
    const raw = Buffer.concat([file('a', 'x'), file('b', 'y'), END]);
    raw.writeUInt8(raw.readUInt8(1024 + 10) ^ 0xff, 1024 + 10);
    expect(catchClip(() => walk(raw, undefined, { name: 'L' }))).toEqual({ code: 'ECORRUPT', message: 'L: bad tar header checksum at byte 1024' });
  });

  it('rejects truncation inside data or a header, accepts a missing end marker', () => {
    const raw = Buffer.concat([file('a', Buffer.alloc(2000, 1)), file('b', 'y')]);
    expect(walk(raw).map((e) => e.path)).toEqual(['a', 'b']);
    expect(catchClip(() => walk(raw.subarray(0, 1500))).message).toMatch(/truncated tar: stream ends at byte 1500 inside the data of "a"/);
    expect(catchClip(() => walk(raw.subarray(0, 2560 + 100))).message).toMatch(/inside a header/);
  });

  it('takes an old-style regular entry whose name ends in "/" for a directory, as tar does', () => {
    const raw = Buffer.concat([header({ name: 'olddir/', type: '\0', mode: 0o755 }), END]);
    expect(walk(raw)[0]).toMatchObject({ path: 'olddir', type: 'dir' });
  });

  it('stops at the first zero block as GNU tar does', () => {
    const raw = Buffer.concat([file('a', 'x'), Buffer.alloc(512), file('after', 'y')]);
    expect(walk(raw).map((e) => e.path)).toEqual(['a']);
  });

  it('refuses GNU sparse entries naming them', () => {
    const sparseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-sparse-'));
    try {
      execFileSync('truncate', ['-s', '10M', path.join(sparseDir, 'holes')]);
      fs.appendFileSync(path.join(sparseDir, 'holes'), 'end');
      for (const format of ['gnu', 'pax']) {
        const raw = execFileSync('tar', ['-C', sparseDir, '--sparse', `--format=${format}`, '-cf', '-', 'holes'], { maxBuffer: 1 << 26 });
        const err = catchClip(() => walk(raw));
        expect(err.code).toBe('EUNSUPPORTED');
        expect(err.message).toContain('holes');
      }
    } finally {
      fs.rmSync(sparseDir, { recursive: true, force: true });
    }
  });
});

describe('fuzzed headers', () => {
  it('damaged archives fail only with ClipErrors', () => {
    const raw = execFileSync('tar', ['-C', path.join(dir, 'root'), '--format=pax', '-cf', '-', 'small.txt', 'deep', 'link', 'hard.txt']);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: raw.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const bad = Buffer.from(raw);
        for (const [at, v] of edits) bad.writeUInt8(v, at);
        // fix up checksums so the damage reaches the field parsers instead of stopping at the checksum
        for (let off = 0; off + 512 <= bad.length; off += 512) {
          const block = bad.subarray(off, off + 512);
          if (block.toString('latin1', 257, 262) === 'ustar') setChecksum(block);
        }
        try {
          walk(bad);
        } catch (err) {
          if (!isClipError(err)) throw err;
        }
      }),
      { numRuns: 300 },
    );
  });
});
