import { describe, expect, it } from 'vitest';
import { isClipError } from '../../src/util/errors.js';
import { dir, entry, file, hardlink, indexOf, opaque, pathsOf, symlink, viewOf, whiteout } from './layers.js';

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('overlay merge', () => {
  it('lets a later layer replace a file: metadata and content location from the upper layer', () => {
    const lower = file('etc/hosts', { size: 10, uid: 1, mode: 0o600 });
    const upper = file('etc/hosts', { size: 20, uid: 2, mode: 0o644 });
    const idx = indexOf([dir('etc'), lower], [upper]);
    const v = viewOf(idx).get('/etc/hosts')!;
    expect(v).toMatchObject({ uid: 2, perm: 0o644, size: 20, data: `1@${upper.dataOffset}+20` });
  });

  it('deletes a file with .wh.NAME and a whole subtree with .wh.DIR; whiteouts never appear', () => {
    const idx = indexOf(
      [dir('a'), file('a/keep'), file('a/gone'), dir('a/sub'), dir('a/sub/deep'), file('a/sub/deep/x')],
      [whiteout('a/gone'), whiteout('a/sub'), whiteout('a/never-existed'), whiteout('no/such/parent')],
    );
    expect(pathsOf(idx)).toEqual(['/', '/a', '/a/keep']);
  });

  it('applies whiteouts to lower layers only, in either stream order (as umoci does)', () => {
    const idx = indexOf(
      [file('x'), file('y')],
      [file('x', { size: 4 }), whiteout('x'), whiteout('y'), file('y', { size: 6 })],
    );
    const v = viewOf(idx);
    expect(v.get('/x')!.data).toMatch(/^1@/);
    expect(v.get('/y')!.size).toBe(6);
  });

  it('makes a dir opaque: lower entries hidden, the same layer\'s kept before and after the marker', () => {
    const idx = indexOf(
      [dir('d'), file('d/old1'), file('d/old2'), dir('d/olddir'), file('d/olddir/f'), file('outside')],
      [file('d/before'), opaque('d'), file('d/after')],
    );
    expect(pathsOf(idx)).toEqual(['/', '/d', '/d/after', '/d/before', '/outside']);
  });

  it('keeps a lower directory under an opaque dir when the same layer put entries in it', () => {
    // umoci 0.4.7: d/sub stays with its lower metadata (0700), holding only the new entry.
    const idx = indexOf(
      [dir('d'), dir('d/sub', { mode: 0o700 }), file('d/sub/old')],
      [file('d/sub/new'), opaque('d')],
    );
    expect(pathsOf(idx)).toEqual(['/', '/d', '/d/sub', '/d/sub/new']);
    expect(viewOf(idx).get('/d/sub')!.perm).toBe(0o700);
  });

  it('lets a file replace a directory (the subtree goes) and a directory replace a file', () => {
    const idx = indexOf(
      [dir('a'), file('a/child'), dir('a/sub'), file('a/sub/x'), file('b')],
      [file('a', { size: 3 }), dir('b', { mode: 0o711 }), file('b/inside')],
    );
    const v = viewOf(idx);
    expect(pathsOf(idx)).toEqual(['/', '/a', '/b', '/b/inside']);
    expect(v.get('/a')).toMatchObject({ type: 'file', size: 3 });
    expect(v.get('/b')).toMatchObject({ type: 'dir', perm: 0o711 });
  });

  it('updates a directory\'s metadata when a later layer lists it again, keeping its children', () => {
    const idx = indexOf([dir('a', { uid: 1, mode: 0o755 }), file('a/f')], [dir('a', { uid: 7, mode: 0o750, mtimeNsec: 5 })]);
    expect(pathsOf(idx)).toEqual(['/', '/a', '/a/f']);
    expect(viewOf(idx).get('/a')).toMatchObject({ uid: 7, perm: 0o750, mtime: '1700000000.000000005' });
  });

  it('creates missing parents as 0755 root:root directories and counts directory links', () => {
    const idx = indexOf([file('a/b/c/file', { uid: 5 }), dir('z', { uid: 3, mode: 0o700 }), dir('z/y')]);
    const v = viewOf(idx);
    for (const p of ['/a', '/a/b', '/a/b/c']) expect(v.get(p)).toMatchObject({ type: 'dir', perm: 0o755, uid: 0, gid: 0, mtime: '0.000000000' });
    expect(v.get('/a/b/c/file')!.uid).toBe(5);
    expect(v.get('/')!.nlink).toBe(4); // ".", "..", a/.., z/..
    expect(v.get('/a/b/c')!.nlink).toBe(2);
    expect(v.get('/z')!.nlink).toBe(3);
  });

  it('takes the root directory\'s metadata from a "./" entry', () => {
    const idx = indexOf([entry('', { type: 'dir', mode: 0o700, uid: 9, mtimeSec: 77 })]);
    expect(viewOf(idx).get('/')).toMatchObject({ type: 'dir', perm: 0o700, uid: 9, mtime: '77.000000000' });
  });

  it('follows symlinked parents inside the root (lib -> usr/lib)', () => {
    const idx = indexOf(
      [dir('usr'), dir('usr/lib'), symlink('lib', 'usr/lib'), symlink('abs', '/usr'), symlink('up', '../../usr')],
      [file('lib/x'), file('abs/y'), file('up/z')],
    );
    expect(pathsOf(idx)).toEqual(['/', '/abs', '/lib', '/up', '/usr', '/usr/lib', '/usr/lib/x', '/usr/y', '/usr/z']);
  });

  it('creates the target of a dangling symlinked parent, clamping ".." at the root (umoci-checked)', () => {
    const idx = indexOf([symlink('link', 'nonexist/dir'), symlink('abs', '/../../x')], [file('link/file'), file('abs/y')]);
    expect(pathsOf(idx)).toEqual(['/', '/abs', '/link', '/nonexist', '/nonexist/dir', '/nonexist/dir/file', '/x', '/x/y']);
  });

  it('refuses a parent that is a regular file', () => {
    const err = errorOf(() => indexOf([file('a'), file('a/b')]));
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect(String(err)).toMatch(/a\/b/);
  });

  it('replaces a symlink to a directory with a directory entry (umoci without --keep-dirlink)', () => {
    const idx = indexOf([dir('real'), file('real/f'), symlink('link', 'real')], [dir('link'), file('link/g')]);
    expect(pathsOf(idx)).toEqual(['/', '/link', '/link/g', '/real', '/real/f']);
  });
});

describe('hardlinks', () => {
  it('share one inode within a layer; nlink counts the names; the link\'s own header is ignored', () => {
    const t = file('t', { size: 9, uid: 7, mode: 0o600 });
    const idx = indexOf([t, hardlink('h', 't', { uid: 9, mode: 0o755, mtimeSec: 5 }), dir('d'), hardlink('d/h2', 't')]);
    const v = viewOf(idx);
    for (const p of ['/t', '/h', '/d/h2']) {
      expect(v.get(p)).toMatchObject({ ino: v.get('/t')!.ino, nlink: 3, uid: 7, perm: 0o600, size: 9, data: `0@${t.dataOffset}+9` });
    }
    expect(idx.pathOf(v.get('/h')!.ino)).toMatch(/^\/(t|h|d\/h2)$/);
  });

  it('link to a target in a lower layer, and to a lower hardlink', () => {
    const t = file('t', { size: 4 });
    const idx = indexOf([t, hardlink('l1', 't')], [hardlink('l2', 'l1')]);
    const v = viewOf(idx);
    expect(v.get('/l2')).toMatchObject({ ino: v.get('/t')!.ino, nlink: 3, data: `0@${t.dataOffset}+4` });
  });

  it('keeps the old inode for links when their target is replaced or deleted later (umoci-checked)', () => {
    const idx = indexOf(
      [file('t', { size: 1 }), hardlink('l1', 't'), file('u'), hardlink('q', 'u')],
      [file('t', { size: 3 }), hardlink('l2', 'l1'), whiteout('u')],
      [symlink('l1', 't')],
    );
    const v = viewOf(idx);
    expect(v.get('/t')).toMatchObject({ size: 3, nlink: 1 });
    expect(v.get('/l2')).toMatchObject({ size: 1, nlink: 1 });
    expect(v.get('/l1')).toMatchObject({ type: 'symlink', target: 't' });
    expect(v.get('/q')).toMatchObject({ nlink: 1 });
    expect(v.has('/u')).toBe(false);
  });

  it('survives a whiteout of its target later in the same layer', () => {
    const idx = indexOf([file('z', { size: 2 })], [hardlink('q', 'z'), whiteout('z')]);
    expect(pathsOf(idx)).toEqual(['/', '/q']);
    expect(viewOf(idx).get('/q')).toMatchObject({ nlink: 1, size: 2 });
  });

  it('is an error naming the link when the target does not exist (umoci fails the same way)', () => {
    const err = errorOf(() => indexOf([dir('e'), file('e/f')], [whiteout('e')], [hardlink('hl2', 'e/f')]));
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect(String(err)).toContain('hl2');
    expect(String(err)).toContain('e/f');
    expect(isClipError(errorOf(() => indexOf([hardlink('a', 'b'), file('b')])), 'ECORRUPT')).toBe(true);
  });

  it('refuses a link to a directory and a link target escaping the root', () => {
    expect(isClipError(errorOf(() => indexOf([dir('d'), hardlink('h', 'd')])), 'ECORRUPT')).toBe(true);
    expect(isClipError(errorOf(() => indexOf([file('f'), hardlink('h', '../f')])), 'EUNSAFE')).toBe(true);
  });
});

describe('metadata kept', () => {
  it('symlinks, devices, FIFOs, special bits, owners, nanosecond mtimes', () => {
    const idx = indexOf([
      symlink('s', '/etc/../target with space', { mtimeSec: 1, mtimeNsec: 999_999_999 }),
      dir('dev'),
      entry('dev/null', { type: 'char', mode: 0o666, devMajor: 1, devMinor: 3 }),
      entry('dev/sda', { type: 'block', mode: 0o660, gid: 6, devMajor: 8, devMinor: 0 }),
      entry('dev/big', { type: 'char', devMajor: 4095, devMinor: 1_048_575 }),
      entry('fifo', { type: 'fifo', mode: 0o600 }),
      file('suid', { mode: 0o4755, uid: 65534, gid: 4_000_000_000 }),
      file('sgid', { mode: 0o2711 }),
      dir('tmp', { mode: 0o1777 }),
      file('old', { mtimeSec: -86400, mtimeNsec: 1 }),
      file('huge', { size: 2 ** 36 + 3, dataOffset: 2 ** 39 + 512 }),
    ]);
    const v = viewOf(idx);
    expect(v.get('/s')).toMatchObject({ type: 'symlink', target: '/etc/../target with space', size: 25, mtime: '1.999999999' });
    expect(v.get('/dev/null')).toMatchObject({ type: 'char', perm: 0o666, rdev: '1:3' });
    expect(v.get('/dev/sda')).toMatchObject({ type: 'block', gid: 6, rdev: '8:0' });
    expect(v.get('/dev/big')!.rdev).toBe('4095:1048575');
    expect(v.get('/fifo')).toMatchObject({ type: 'fifo', perm: 0o600 });
    expect(v.get('/suid')).toMatchObject({ perm: 0o4755, uid: 65534, gid: 4_000_000_000 });
    expect(v.get('/sgid')!.perm).toBe(0o2711);
    expect(v.get('/tmp')!.perm).toBe(0o1777);
    expect(v.get('/old')!.mtime).toBe('-86400.000000001');
    expect(v.get('/huge')!.data).toBe(`0@${2 ** 39 + 512}+${2 ** 36 + 3}`);
  });

  it('xattrs, security.capability above all, on files and directories', () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const idx = indexOf([
      file('bin/ping', { xattrs: new Map([['security.capability', cap], ['user.note', Buffer.from('')]]) }),
      dir('data', { xattrs: new Map([['trusted.overlay.x', Buffer.from([0, 255, 0])]]) }),
      file('plain'),
    ]);
    const ping = idx.resolvePath('/bin/ping');
    expect(idx.listxattr(ping)).toEqual(['security.capability', 'user.note']);
    expect(idx.getxattr(ping, 'security.capability')).toEqual(cap);
    expect(idx.getxattr(ping, 'user.note')).toEqual(Buffer.alloc(0));
    expect(idx.getxattr(ping, 'user.absent')).toBeUndefined();
    expect(idx.getxattr(idx.resolvePath('/data'), 'trusted.overlay.x')).toEqual(Buffer.from([0, 255, 0]));
    expect(idx.listxattr(idx.resolvePath('/plain'))).toEqual([]);
  });
});

describe('unsafe paths', () => {
  it.each(['../etc/passwd', 'a/../../b', '/etc/passwd', 'a//b', './a', 'a/.'])('rejects %j with EUNSAFE', (path) => {
    const err = errorOf(() => indexOf([file(path)]));
    expect(isClipError(err, 'EUNSAFE')).toBe(true);
    expect(String(err)).toContain(path);
  });

  it('rejects unsafe whiteout paths too', () => {
    expect(isClipError(errorOf(() => indexOf([entry('../.wh.x')])), 'EUNSAFE')).toBe(true);
  });
});
