import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TarEntry } from '../../src/archive/types.js';
import { emptyAttr, S_IFDIR, S_IFMT } from '../../src/index/types.js';
import { dir, entry, file, indexOf, symlink, viewOf } from './layers.js';

describe('ImageIndex queries', () => {
  const idx = indexOf([
    dir('usr'), dir('usr/bin'), file('usr/bin/env', { size: 42 }), symlink('bin', 'usr/bin'),
    symlink('etc/alt', '/usr/bin/env'), symlink('etc/rel', '../usr/bin/env'), symlink('etc/up', '../../../../usr'),
    symlink('loop1', 'loop2'), symlink('loop2', 'loop1'), symlink('dangling', 'nowhere'),
  ]);

  it('resolves paths, following symlinked parents inside the root and the last one on request', () => {
    const env = idx.resolvePath('/usr/bin/env');
    expect(env).toBeGreaterThan(1);
    expect(idx.resolvePath('usr/bin/env')).toBe(env);
    expect(idx.resolvePath('/')).toBe(1);
    expect(idx.resolvePath('')).toBe(1);
    expect(idx.resolvePath('/usr/bin/')).toBe(idx.resolvePath('/usr/bin'));
    expect(idx.resolvePath('/bin/env')).toBe(env);
    expect(idx.resolvePath('/etc/up/bin/env')).toBe(env);
    expect(idx.resolvePath('/../../usr/./bin/env')).toBe(env);
    expect(idx.type(idx.resolvePath('/etc/alt'))).toBe('symlink');
    expect(idx.resolvePath('/etc/alt', { followLast: true })).toBe(env);
    expect(idx.resolvePath('/etc/rel', { followLast: true })).toBe(env);
    expect(idx.resolvePath('/usr/bin/env/x')).toBe(0);
    expect(idx.resolvePath('/nope')).toBe(0);
    expect(idx.resolvePath('/dangling', { followLast: true })).toBe(0);
    expect(() => idx.resolvePath('/loop1', { followLast: true })).toThrow(/too many levels of symbolic links/);
    expect(() => idx.resolvePathOrThrow('/nope')).toThrow(expect.objectContaining({ code: 'ENOTFOUND', object: '/nope' }));
  });

  it('looks up names in a directory, by string or bytes, and says 0 for absent names and non-directories', () => {
    const usr = idx.lookup(1, 'usr');
    const bin = idx.lookup(usr, Buffer.from('bin'));
    expect(idx.lookup(bin, 'env')).toBe(idx.resolvePath('/usr/bin/env'));
    expect(idx.lookup(bin, 'en')).toBe(0);
    expect(idx.lookup(bin, 'envx')).toBe(0);
    expect(idx.lookup(idx.lookup(bin, 'env'), 'x')).toBe(0);
    expect(idx.lookup(99999, 'x')).toBe(0);
  });

  it('fills a reused attribute object, and reports parents and paths', () => {
    const a = emptyAttr();
    const env = idx.resolvePath('/usr/bin/env');
    expect(idx.getattr(env, a)).toBe(a);
    expect(a).toMatchObject({ ino: env, size: 42, nlink: 1 });
    expect(idx.getattr(1, a).mode & S_IFMT).toBe(S_IFDIR);
    expect(idx.parent(env)).toBe(idx.resolvePath('/usr/bin'));
    expect(idx.parent(1)).toBe(1);
    expect(idx.pathOf(env)).toBe('/usr/bin/env');
    expect(idx.pathOf(1)).toBe('/');
    expect(() => idx.getattr(0)).toThrow(expect.objectContaining({ code: 'ENOTFOUND' }));
    expect(() => idx.getattr(idx.inodeCount + 1)).toThrow(expect.objectContaining({ code: 'ENOTFOUND' }));
  });

  it('walks depth first in name order, from the root or a subdirectory', () => {
    expect([...idx.walk(idx.resolvePath('/usr'))].map((e) => e.path)).toEqual(['/usr', '/usr/bin', '/usr/bin/env']);
    expect([...idx.walk()].map((e) => e.path)).toEqual([
      '/', '/bin', '/dangling', '/etc', '/etc/alt', '/etc/rel', '/etc/up', '/loop1', '/loop2', '/usr', '/usr/bin', '/usr/bin/env',
    ]);
  });
});

describe('large directory', () => {
  const names: string[] = [];
  for (let i = 0; i < 20_000; i++) names.push(`f${(i * 7919) % 20_000}-${'é'.repeat(i % 3)}.txt`);
  names.push('Z', 'a', '\u00ff', '\u4e2d\u6587', '.hidden', '-dash');
  const idx = indexOf([dir('big'), ...names.map((n) => file(`big/${n}`, { size: n.length }))]);
  const big = idx.resolvePath('/big');

  it('finds every name by binary search and misses absent ones', () => {
    const wrong = names.filter((n) => {
      const ino = idx.lookup(big, n);
      return ino === 0 || idx.getattr(ino).size !== n.length;
    });
    expect(wrong).toEqual([]);
    for (const absent of ['', 'f', 'f1', 'zzz', 'f0-.txt.', '\u4e2d']) expect(idx.lookup(big, absent)).toBe(0);
  });

  it('lists children sorted by name bytes, resuming from any offset cookie', () => {
    const sorted = [...names].map((n) => Buffer.from(n)).sort(Buffer.compare).map((b) => b.toString());
    const seen: string[] = [];
    const cookies: number[] = [];
    let modeMismatches = 0;
    idx.readdir(big, 0, (name, ino, mode, next) => {
      seen.push(name.toString());
      cookies.push(next);
      if (mode !== idx.getattr(ino).mode) modeMismatches++;
    });
    expect(modeMismatches).toBe(0);
    expect(seen).toEqual(sorted);
    expect(idx.childCount(big)).toBe(names.length);
    // A reader that stops after each batch of 1000 and resumes from the last cookie sees everything once.
    const batched: string[] = [];
    let offset = 0;
    for (;;) {
      let n = 0;
      let last = offset;
      idx.readdir(big, offset, (name, _ino, _mode, next) => {
        if (n === 1000) return false;
        batched.push(name.toString());
        n++;
        last = next;
        return true;
      });
      if (n === 0) break;
      offset = last;
    }
    expect(batched).toEqual(sorted);
    expect(cookies[cookies.length - 1]).toBe(names.length);
  });
});

describe('round trip (property)', () => {
  const segment = fc.stringMatching(/^[a-zA-Z0-9._\u00e9\u4e2d-]{1,12}$/).filter((s) => s !== '.' && s !== '..' && !s.startsWith('.wh.'));
  const entryArb = fc.record({
    path: fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join('/')),
    kind: fc.constantFrom('file', 'dir', 'symlink', 'char', 'block', 'fifo'),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.nat({ max: 0xffffffff }),
    gid: fc.nat({ max: 0xffffffff }),
    size: fc.nat({ max: 2 ** 36 }),
    mtimeSec: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    mtimeNsec: fc.nat({ max: 999_999_999 }),
    target: fc.string({ minLength: 1, maxLength: 40 }),
    dev: fc.tuple(fc.nat({ max: 0xfff }), fc.nat({ max: 0xfffff })),
    xattrs: fc.dictionary(fc.constantFrom('security.capability', 'user.a', 'user.b', 'trusted.x'), fc.uint8Array({ maxLength: 30 }), { maxKeys: 3 }),
    dataOffset: fc.nat({ max: 2 ** 36 }),
  });

  it('a random set of entries reads back exactly through write and load', () => {
    fc.assert(
      fc.property(fc.uniqueArray(entryArb, { selector: (e) => e.path, maxLength: 60 }), (raw) => {
        // Keep a tree: drop entries whose path passes through a non-directory of the set.
        const kinds = new Map(raw.map((e) => [e.path, e.kind]));
        const valid = raw.filter((e) => {
          const parts = e.path.split('/');
          for (let i = 1; i < parts.length; i++) {
            const k = kinds.get(parts.slice(0, i).join('/'));
            if (k !== undefined && k !== 'dir') return false;
          }
          return true;
        });
        const entries: TarEntry[] = valid.map((e) => entry(e.path, {
          type: e.kind, mode: e.mode, uid: e.uid, gid: e.gid, size: e.kind === 'file' ? e.size : 0,
          mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, linkTarget: e.kind === 'symlink' ? e.target : '',
          devMajor: e.dev[0], devMinor: e.dev[1], dataOffset: e.dataOffset,
          xattrs: new Map(Object.entries(e.xattrs).map(([k, v]) => [k, Buffer.from(v)])),
        }));
        const view = viewOf(indexOf(entries));
        const implied = new Set<string>();
        for (const e of valid) {
          const v = view.get(`/${e.path}`);
          expect(v, e.path).toBeDefined();
          expect(v).toMatchObject({
            type: e.kind, perm: e.mode, uid: e.uid, gid: e.gid, mtime: `${e.mtimeSec}.${String(e.mtimeNsec).padStart(9, '0')}`,
          });
          if (e.kind === 'file') expect(v!.data).toBe(`0@${e.dataOffset}+${e.size}`);
          if (e.kind === 'symlink') expect(v).toMatchObject({ target: e.target, size: Buffer.byteLength(e.target) });
          if (e.kind === 'char' || e.kind === 'block') expect(v!.rdev).toBe(`${e.dev[0]}:${e.dev[1]}`);
          const xs = Object.entries(e.xattrs);
          expect(v!.xattrs ?? {}).toEqual(Object.fromEntries(xs.map(([k, b]) => [k, Buffer.from(b).toString('hex')])));
          const parts = e.path.split('/');
          for (let i = 1; i < parts.length; i++) implied.add(`/${parts.slice(0, i).join('/')}`);
        }
        // Nothing else appears: the root, the entries and their implied parents.
        const expected = new Set(['/', ...valid.map((e) => `/${e.path}`), ...implied]);
        expect(new Set(view.keys())).toEqual(expected);
      }),
      { numRuns: 150 },
    );
  });
});
