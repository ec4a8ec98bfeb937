import { mkdtempSync, rmSync } from 'node:fs';
import { open, readdir, readFile, readlink, stat, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { makeDev, mount, type Mount } from '../../src/fuse/index.js';
import { defaultMaxPages } from '../../src/fuse/read-size.js';
import { skipUnlessRoot } from '../support/env.js';
import { MemFs, pattern, S_IFCHR, S_IFDIR, S_IFIFO, sha256, T0 } from './memfs.js';
import { python, run, spawn } from './tools.js';

const MiB = 1024 * 1024;
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service, v2

function buildFs(): { fs: MemFs; big: Buffer; smalls: Buffer[] } {
  const fs = new MemFs();
  const big = pattern(5 * MiB + 12345, 1);
  const etc = fs.mkdir(1, 'etc');
  fs.mkdir(1, 'usr');
  const bin = fs.mkdir(1, 'bin');
  fs.file(etc, 'hostname', Buffer.from('clip\n'), { mtime: { sec: 1_600_000_000, nsec: 987_654_321 } });
  const bigIno = fs.file(1, 'big.bin', big);
  fs.link(bin, 'big-link', bigIno);
  const ping = fs.file(bin, 'ping', Buffer.from('#!/bin/sh\necho pong\n'), { mode: 0o104755 });
  fs.setXattr(ping, 'security.capability', CAPABILITY);
  fs.setXattr(ping, 'user.note', Buffer.from('hello'));
  fs.symlink(1, 'hosts-link', 'etc/hostname');
  fs.symlink(1, 'dangling', '/nowhere/at/all');
  fs.special(1, 'fifo', S_IFIFO | 0o644);
  fs.special(1, 'null', S_IFCHR | 0o666, makeDev(1, 3));
  fs.file(1, 'slow', Buffer.from('finally\n'), { slow: true });
  fs.file(1, 'sparse', pattern(3 * 4096, 2), { extents: [[0, 4096], [8192, 12288]] });
  const many = fs.mkdir(1, 'many');
  const smalls: Buffer[] = [];
  for (let i = 0; i < 16; i++) {
    smalls.push(pattern(256 * 1024 + i, 100 + i));
    fs.file(many, `f${i}`, smalls[i]!);
  }
  for (let i = 0; i < 300; i++) fs.file(many, `entry-with-a-longish-name-${i}`, Buffer.from(String(i)));
  return { fs, big, smalls };
}

describe.skipIf(skipUnlessRoot())('FUSE mount of an in-memory filesystem', () => {
  let dir: string;
  let m: Mount;
  let memfs: MemFs;
  let big: Buffer;
  let smalls: Buffer[];
  const p = (...parts: string[]): string => join(dir, ...parts);

  beforeAll(async () => {
    ({ fs: memfs, big, smalls } = buildFs());
    dir = mkdtempSync(join(tmpdir(), 'clip-fuse-'));
    m = await mount(memfs, dir, { fsname: 'cliptest', entryTimeout: 60, attrTimeout: 60, negativeTimeout: 60 });
  });

  afterAll(async () => {
    memfs?.releaseSlow();
    await m?.unmount();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('negotiates INIT with 1 MiB reads (or what a splice carries) and the flags a read-only server wants', () => {
    const init = m.server.init!;
    expect(init.major).toBe(7);
    expect(init.minor).toBeGreaterThanOrEqual(31);
    expect(init.maxPages).toBe(defaultMaxPages());
    const accepted = init.accepted;
    for (const bit of [1n << 0n, 1n << 13n, 1n << 14n, 1n << 18n, 1n << 22n, 1n << 23n]) expect(accepted & bit).toBe(bit & init.offered);
  });

  test('the mount table shows the fsname and type', async () => {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    const line = mounts.split('\n').find((l) => l.split(' ')[1] === dir);
    expect(line).toMatch(/^cliptest \S+ fuse\.cliptest ro,/);
  });

  test('lists directories with ls and readdir', async () => {
    expect((await readdir(dir)).sort()).toEqual(
      ['big.bin', 'bin', 'dangling', 'etc', 'fifo', 'hosts-link', 'many', 'null', 'slow', 'sparse', 'usr'].sort(),
    );
    const many = await readdir(p('many'));
    expect(many).toHaveLength(316);
    const ls = await run('ls', ['-la', p('bin')]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/-rwsr-xr-x\s+1 root root\s+20 Nov 14\s+2023 ping/);
    expect(ls.stdout).toMatch(/-rw-r--r--\s+2 root root\s+5255225 .* big-link/);
    // Plain readdir plus attributes in one go: ls -l needs no separate lookups for these.
    expect(m.server.opCounts.get('READDIRPLUS')).toBeGreaterThan(0);
  });

  test('stat shows the right attributes', async () => {
    const root = await stat(dir);
    expect(root.isDirectory()).toBe(true);
    expect(root.nlink).toBe(2 + 4); // etc, usr, bin, many
    expect(root.ino).toBe(1);

    const a = await stat(p('big.bin'), { bigint: true });
    const b = await stat(p('bin', 'big-link'), { bigint: true });
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2n);
    expect(a.size).toBe(BigInt(big.length));
    expect(a.blocks).toBe(BigInt(Math.ceil(big.length / 512)));
    expect(a.mtimeNs).toBe(BigInt(T0.sec) * 1_000_000_000n + BigInt(T0.nsec));

    const host = await stat(p('etc', 'hostname'), { bigint: true });
    expect(host.mtimeNs).toBe(1_600_000_000_987_654_321n);
    expect(host.ctimeNs).toBe(BigInt(T0.sec) * 1_000_000_000n + BigInt(T0.nsec));

    const ping = await stat(p('bin', 'ping'));
    expect(ping.mode).toBe(0o104755);
    expect((await lstat(p('fifo'))).isFIFO()).toBe(true);
    const nul = await lstat(p('null'));
    expect(nul.isCharacterDevice()).toBe(true);
    const dev = await run('stat', ['-c', '%t:%T %F', p('null')]);
    expect(dev.stdout.trim()).toBe('1:3 character special file');
    expect((await lstat(p('usr'))).mode).toBe(S_IFDIR | 0o755);
  });

  test('reads symlinks', async () => {
    expect(await readlink(p('hosts-link'))).toBe('etc/hostname');
    expect(await readlink(p('dangling'))).toBe('/nowhere/at/all');
    expect(await readFile(p('hosts-link'), 'utf8')).toBe('clip\n');
  });

  test('serves a big file whole, in READs of the largest size', async () => {
    const sum = await run('sha256sum', [p('big.bin')]);
    expect(sum.stdout.split(' ')[0]).toBe(sha256(big));
    expect(Math.max(...memfs.readSizes)).toBe(defaultMaxPages() * 4096);
    expect(sha256(await readFile(p('bin', 'big-link')))).toBe(sha256(big));
    // Unaligned reads through O_DIRECT-free node fs at odd offsets.
    const fh = await open(p('big.bin'));
    try {
      const buf = Buffer.alloc(100_000);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 3 * MiB - 7);
      expect(bytesRead).toBe(buf.length);
      expect(buf.equals(big.subarray(3 * MiB - 7, 3 * MiB - 7 + buf.length))).toBe(true);
      const tail = await fh.read(Buffer.alloc(MiB), 0, MiB, big.length - 10);
      expect(tail.bytesRead).toBe(10);
    } finally {
      await fh.close();
    }
  });

  test('reads extended attributes, with size probes and ERANGE', async () => {
    const file = p('bin', 'ping');
    const names = await python('import os,sys; print(sorted(os.listxattr(sys.argv[1])))', file);
    expect(names.stdout.trim()).toBe("['security.capability', 'user.note']");
    const cap = await python('import os,sys; print(os.getxattr(sys.argv[1], "security.capability").hex())', file);
    expect(cap.stdout.trim()).toBe(CAPABILITY.toString('hex'));
    // libc directly: size 0 asks for the length; a short buffer is ERANGE; a missing name is ENODATA.
    const probe = await python(
      [
        'import ctypes, ctypes.util, sys, errno',
        'libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)',
        'f = sys.argv[1].encode()',
        'n = libc.getxattr(f, b"user.note", None, 0)',
        'buf = ctypes.create_string_buffer(2)',
        'r = libc.getxattr(f, b"user.note", buf, 2); e1 = ctypes.get_errno()',
        'r2 = libc.getxattr(f, b"user.none", None, 0); e2 = ctypes.get_errno()',
        'ln = libc.listxattr(f, None, 0)',
        'r3 = libc.listxattr(f, buf, 2); e3 = ctypes.get_errno()',
        'print(n, r, errno.errorcode[e1], r2, errno.errorcode[e2], ln, r3, errno.errorcode[e3])',
      ].join('\n'),
      file,
    );
    expect(probe.stdout.trim()).toBe(`5 -1 ERANGE -1 ENODATA ${'security.capability\0user.note\0'.length} -1 ERANGE`);
  });

  test('write attempts fail with EROFS', async () => {
    for (const [cmd, args] of [
      ['touch', [p('new-file')]],
      ['touch', [p('etc', 'hostname')]],
      ['mkdir', [p('newdir')]],
      ['rm', ['-f', p('etc', 'hostname')]],
    ] as const) {
      const r = await run(cmd, [...args]);
      expect(r.code, `${cmd} ${args.join(' ')}`).not.toBe(0);
      expect(r.stderr).toMatch(/Read-only file system/);
    }
  });

  test('negative lookups and entries are cached by the kernel', async () => {
    const before = memfs.calls.get('lookup') ?? 0;
    await expect(stat(p('etc', 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(p('etc', 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    await stat(p('etc', 'hostname'));
    await stat(p('etc', 'hostname'));
    // At most one lookup for the missing name and one for hostname (if not already cached).
    expect((memfs.calls.get('lookup') ?? 0) - before).toBeLessThanOrEqual(2);
  });

  test('SEEK_DATA and SEEK_HOLE reach the filesystem', async () => {
    const r = await python(
      'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); print(os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, 4096, os.SEEK_DATA), os.lseek(fd, 9000, os.SEEK_HOLE))',
      p('sparse'),
    );
    expect(r.stdout.trim()).toBe('4096 8192 12288');
    expect(memfs.calls.get('lseek')).toBeGreaterThanOrEqual(3);
  });

  test('statfs answers from the filesystem', async () => {
    const r = await python('import os,sys; s=os.statvfs(sys.argv[1]); print(s.f_bsize, s.f_blocks, s.f_namemax)', dir);
    expect(r.stdout.trim()).toBe('4096 1000 255');
  });

  test('a slow read does not hold up 16 parallel readers', async () => {
    memfs.resetSlow();
    const started = memfs.slowReadStarted;
    const slow = run('cat', [p('slow')]);
    await started;
    const sums = await Promise.all(smalls.map((_, i) => run('sha256sum', [p('many', `f${i}`)])));
    sums.forEach((s, i) => expect(s.stdout.split(' ')[0]).toBe(sha256(smalls[i]!)));
    expect(m.server.pending).toBeGreaterThanOrEqual(1); // the slow read is still in flight
    memfs.releaseSlow();
    expect((await slow).stdout).toBe('finally\n');
  });

  test('killing a reader interrupts its slow read', async () => {
    memfs.resetSlow();
    const started = memfs.slowReadStarted;
    const child = spawn('cat', [p('slow')], { stdio: 'ignore' });
    const exited = new Promise<string | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    await started;
    const aborted = memfs.abortedReads;
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // The INTERRUPT reaches this thread through a reader thread; the child's exit may be seen first.
    await vi.waitUntil(() => memfs.abortedReads > aborted, { timeout: 20_000 });
    expect(memfs.abortedReads).toBe(aborted + 1);
    expect(m.server.opCounts.get('INTERRUPT')).toBeGreaterThanOrEqual(1);
    memfs.releaseSlow();
  });
});
