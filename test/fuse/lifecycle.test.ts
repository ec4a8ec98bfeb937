import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { mount, S_IFLNK, type FuseFilesystem, type StatFs } from '../../src/fuse/index.js';
import { cleanStaleMount } from '../../src/fuse/attach.js';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { skipUnlessRoot } from '../support/env.js';
import { MemFs } from './memfs.js';
import { python, run, spawn, startServeChild } from './tools.js';

/**
 * A python process that opens `file`, prints its first line, and on a line from us asks the
 * filesystem again through the open file (fstatvfs: STATFS is never answered from a cache) and
 * prints the errno name (or "ok").
 */
async function startHolder(file: string): Promise<{ proc: ReturnType<typeof spawn>; firstLine: string; readAgain: () => Promise<string> }> {
  const code = [
    'import os, sys, errno',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    'print(os.pread(fd, 64, 0).decode(), flush=True)',
    'sys.stdin.readline()',
    'try:',
    '  os.fstatvfs(fd); print("ok", flush=True)',
    'except OSError as e:',
    '  print(errno.errorcode[e.errno], flush=True)',
  ].join('\n');
  const proc = spawn('python3', ['-c', code, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  let buffered = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const nextLine = (): Promise<string> => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise((r) => waiters.push(r)));
  const firstLine = await nextLine();
  return {
    proc,
    firstLine,
    readAgain: () => {
      proc.stdin!.write('\n');
      return nextLine();
    },
  };
}

describe.skipIf(skipUnlessRoot())('FUSE mount lifecycle', () => {
  let dir: string;

  // Only asynchronous calls on the mountpoint: this process serves the mount it touches.
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-fuse-life-'));
  });
  afterEach(async () => {
    if (mountsAt(dir).length > 0) await run('umount', ['-l', dir]);
    await rm(dir, { recursive: true, force: true });
  });

  test('unmount is clean: the connection ends and the mountpoint is an empty directory again', async () => {
    const fs = new MemFs();
    fs.file(1, 'a', Buffer.from('a'));
    const m = await mount(fs, dir);
    expect(await readdir(dir)).toEqual(['a']);
    await m.unmount();
    await m.closed;
    expect(mountsAt(dir)).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
    await m.unmount(); // twice is harmless
  });

  test('closed settles when someone else unmounts', async () => {
    const m = await mount(new MemFs(), dir);
    expect((await run('umount', [dir])).code).toBe(0);
    await m.closed;
  });

  test('a busy mount is unmounted lazily and its connection aborted after the timeout', async () => {
    const fs = new MemFs();
    fs.file(1, 'held', Buffer.from('held open'));
    const m = await mount(fs, dir);
    // Another process holds the file open: if this one held it, spawning `umount` would deadlock
    // (the child's exec closes the inherited file, and that FLUSH waits for this blocked thread).
    const holder = await startHolder(join(dir, 'held'));
    try {
      expect(holder.firstLine).toBe('held open');
      const started = Date.now();
      await m.unmount({ timeoutMs: 300 });
      await m.closed;
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(mountsAt(dir)).toEqual([]);
      // The holder's connection is gone: its next request fails instead of hanging.
      expect(await holder.readAgain()).toBe('ENOTCONN');
    } finally {
      holder.proc.kill('SIGKILL');
    }
  });

  test('a stale mount left by a killed server is detected and cleaned by the next mount', async () => {
    const { line, proc } = await startServeChild(dir);
    expect(line).toBe('ready');
    expect(await readFile(join(dir, 'hello'), 'utf8')).toBe('hello from the child\n');
    const exited = new Promise((r) => proc.on('exit', r));
    proc.kill('SIGKILL');
    await exited;
    // What a user sees on a dead mount (stat alone may still be answered from cached attributes).
    await expect(readdir(dir)).rejects.toMatchObject({ code: 'ENOTCONN' });

    const fs = new MemFs();
    fs.file(1, 'fresh', Buffer.from('new server'));
    const m = await mount(fs, dir);
    try {
      expect(await readdir(dir)).toEqual(['fresh']);
      expect(mountsAt(dir)).toHaveLength(1);
    } finally {
      await m.unmount();
    }
  });

  test('mounting on a live FUSE mount is refused', async () => {
    const m = await mount(new MemFs(), dir);
    try {
      await expect(mount(new MemFs(), dir)).rejects.toMatchObject({ name: 'ClipError', code: 'EINVAL' });
    } finally {
      await m.unmount();
    }
  });

  test('a bad server setting fails the mount with EINVAL and leaves nothing mounted', async () => {
    // The settings are read once the descriptor is attached: the attach must be undone.
    await expect(mount(new MemFs(), dir, { maxReaderThreads: 0 })).rejects.toMatchObject({ name: 'ClipError', code: 'EINVAL' });
    expect(mountsAt(dir)).toEqual([]);
    const saved = process.env.CLIP_FUSE_MAX_THREADS;
    process.env.CLIP_FUSE_MAX_THREADS = 'lots';
    try {
      await expect(mount(new MemFs(), dir)).rejects.toMatchObject({ name: 'ClipError', code: 'EINVAL', object: 'CLIP_FUSE_MAX_THREADS=lots' });
    } finally {
      if (saved === undefined) delete process.env.CLIP_FUSE_MAX_THREADS;
      else process.env.CLIP_FUSE_MAX_THREADS = saved;
    }
    expect(mountsAt(dir)).toEqual([]);
    // The mountpoint is a plain directory again, and the next mount works.
    expect(await readdir(dir)).toEqual([]);
    const fs = new MemFs();
    fs.file(1, 'after', Buffer.from('after'));
    const m = await mount(fs, dir);
    try {
      expect(await readdir(dir)).toEqual(['after']);
    } finally {
      await m.unmount();
    }
  });

  test('mounting on a mount whose server does not answer fails with ETIMEOUT instead of waiting', async () => {
    const fs = new MemFs();
    const answer: StatFs = { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
    const held: (() => void)[] = [];
    let hang = true;
    // STATFS hangs until released (then answers at once: umount(8) asks too).
    const hung = Object.assign(Object.create(fs) as MemFs, {
      statfs: (): Promise<StatFs> => (hang ? new Promise((resolve) => held.push(() => resolve(answer))) : Promise.resolve(answer)),
    });
    const m = await mount(hung, dir);
    try {
      const started = Date.now();
      await expect(cleanStaleMount(dir, undefined, 300)).rejects.toMatchObject({ name: 'ClipError', code: 'ETIMEOUT', object: dir });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(mountsAt(dir)).toHaveLength(1); // left alone: it is someone's live mount
    } finally {
      hang = false;
      for (const release of held) release();
      await m.unmount();
    }
  });

  test('without root, mount fails with EPERM saying so', async () => {
    const { line } = await startServeChild(dir, 'try', 65534);
    expect(line).toMatch(/^error EPERM .*needs root/);
  });
});

/** Only the required operations: everything optional answers ENOSYS or its default. */
function minimalFs(): FuseFilesystem {
  const t = { sec: 0, nsec: 0 };
  const root = { ino: 1, size: 0, blocks: 0, atime: t, mtime: t, ctime: t, mode: 0o40755, nlink: 2, uid: 0, gid: 0, rdev: 0 };
  const file = { ...root, ino: 2, size: 3, mode: 0o100644, nlink: 1 };
  const link = { ...root, ino: 3, size: 1, mode: S_IFLNK | 0o777, nlink: 1 };
  const byName: Record<string, typeof root> = { f: file, l: link };
  return {
    async lookup(_parent, name) {
      const attr = byName[name.toString()];
      return attr ? { ino: attr.ino, attr } : null;
    },
    async getattr(ino) {
      return [root, file, link][ino - 1]!;
    },
    async read(_ino, _fh, offset, size) {
      return Buffer.from('abc').subarray(offset, offset + size);
    },
    async readdir(_ino, req) {
      return [
        { name: '.', ino: 1, mode: 0o40000, next: 1 },
        { name: '..', ino: 1, mode: 0o40000, next: 2 },
        { name: 'f', ino: 2, mode: 0o100000, next: 3 },
        { name: 'l', ino: 3, mode: S_IFLNK, next: 4 },
      ].slice(req.offset);
    },
  };
}

describe.skipIf(skipUnlessRoot())('FUSE server answers for what the filesystem lacks', () => {
  test('write operations reaching the server answer EROFS; missing operations ENOSYS', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'clip-fuse-min-'));
    // Mounted read-write so that the kernel passes write requests on instead of refusing them itself.
    const m = await mount(minimalFs(), dir, { readOnly: false });
    try {
      for (const [cmd, args] of [
        ['touch', [join(dir, 'new')]],
        ['touch', [join(dir, 'f')]],
        ['mkdir', [join(dir, 'd')]],
        ['rm', ['-f', join(dir, 'f')]],
        ['mv', [join(dir, 'f'), join(dir, 'g')]],
        ['ln', ['-s', 'x', join(dir, 'sym')]],
      ] as const) {
        const r = await run(cmd, [...args]);
        expect(r.stderr, `${cmd} ${args.join(' ')}`).toMatch(/Read-only file system/);
      }
      for (const op of ['CREATE', 'MKDIR', 'UNLINK', 'RENAME2', 'SYMLINK']) expect(m.server.opCounts.get(op), op).toBeGreaterThan(0);
      // EOPNOTSUPP and ENOTSUP are one errno on Linux; python names it either way.
      const xattr = await python(
        'import os,sys,errno\nfor f in (os.listxattr, lambda p: os.getxattr(p, "user.x")):\n  try: f(sys.argv[1])\n  except OSError as e: print(e.errno == errno.EOPNOTSUPP)',
        join(dir, 'f'),
      );
      expect(xattr.stdout.split('\n').filter(Boolean)).toEqual(['True', 'True']);
      const rl = await python('import os,sys,errno\ntry: os.readlink(sys.argv[1])\nexcept OSError as e: print(errno.errorcode[e.errno])', join(dir, 'l'));
      expect(rl.stdout.trim()).toBe('ENOSYS');
      expect(await readFile(join(dir, 'f'), 'utf8')).toBe('abc');
      // No lseek: the kernel falls back to its own (the whole file is data).
      const seek = await python('import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); print(os.lseek(fd, 0, os.SEEK_HOLE))', join(dir, 'f'));
      expect(seek.stdout.trim()).toBe('3');
      expect(m.server.opCounts.get('READDIRPLUS')).toBeUndefined(); // not offered without readdirplus
      // An opcode the server has no case for (POLL) answers ENOSYS: the kernel then reports the file
      // always ready and never sends POLL again.
      const polled = await python(
        'import os,sys,select\nfd=os.open(sys.argv[1], os.O_RDONLY)\np=select.poll(); p.register(fd, select.POLLIN)\nfor _ in range(2): print([e == select.POLLIN for f, e in p.poll(0) if f == fd])',
        join(dir, 'f'),
      );
      expect(polled.stdout.split('\n').filter(Boolean)).toEqual(['[True]', '[True]']); // readable at once, twice
      expect(m.server.opCounts.get('POLL')).toBe(1);
    } finally {
      await m.unmount();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('with posixAcl the kernel asks for a file\'s ACL once and caches the answer, "none" included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'clip-fuse-acl-'));
    const fs = new MemFs();
    fs.file(1, 'f', Buffer.from('x'));
    const m = await mount(fs, dir, { posixAcl: true, entryTimeout: 60, attrTimeout: 60 });
    try {
      expect(m.server.init!.accepted & (1n << 20n)).toBe(1n << 20n);
      const probe = 'import os,sys,errno\nfor _ in range(5):\n  try: os.getxattr(sys.argv[1], "system.posix_acl_access")\n  except OSError as e: print(errno.errorcode[e.errno])';
      const r = await python(probe, join(dir, 'f'));
      expect(r.stdout.split('\n').filter(Boolean)).toEqual(Array(5).fill('ENODATA'));
      expect(m.server.opCounts.get('GETXATTR')).toBe(1);
    } finally {
      await m.unmount();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
