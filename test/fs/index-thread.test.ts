/**
 * What the FUSE reader threads answer for an image (src/fs/index-thread.ts): opens need no answer.
 * The thread answers OPEN and FLUSH with ENOSYS, after which the kernel opens and closes files of
 * the mount without asking (no_open, no_flush) and sends no RELEASE; the files still read right.
 * OPENDIR the same: no OPENDIR or RELEASEDIR after the first, and the listings still right.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/index/reader.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { umociUnpack } from '../support/tools.js';
import { python } from '../fuse/tools.js';
import { InitFlag } from '../../src/fuse/protocol.js';
import { indexImage, mountIndex } from './helpers.js';

const FILE = 'opt/app/large.bin';

/** Open, read 64 KiB at `off`, close, `n` times; prints how many reads differed from the reference. */
const REOPEN = String.raw`
import os, sys
mnt, ref, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = 0
for k in range(n):
    off = k * 100_003
    a = os.open(mnt, os.O_RDONLY); b = os.open(ref, os.O_RDONLY)
    if os.pread(a, 65536, off) != os.pread(b, 65536, off): bad += 1
    os.close(a); os.close(b)
print(bad)
`;

/** Lists every directory under argv[1] and argv[2] (same relative paths), `n` rounds; prints how many listings differed, then how many directories. */
const LISTDIRS = String.raw`
import os, sys
mnt, ref, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
dirs = [os.path.relpath(d, ref) for d, _, _ in os.walk(ref)]
bad = 0
for _ in range(n):
    for d in dirs:
        if sorted(os.listdir(os.path.join(mnt, d))) != sorted(os.listdir(os.path.join(ref, d))): bad += 1
print(bad)
print(len(dirs))
`;

describe.skipIf(skipUnlessRoot())('an image served from the reader threads', () => {
  let work: string;
  let tree: string;
  let index: ImageIndex;
  let ref: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-index-thread-'));
    const fx = await fixture('basic');
    index = await indexImage(fx.ref, { chunkSize: 64 * 1024 });
    tree = await umociUnpack(fx.layoutDir, 'latest', join(work, 'unpack'));
    ref = join(tree, FILE);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('opens files without OPEN, FLUSH or RELEASE requests once the kernel has its ENOSYS', async () => {
    const m = await mountIndex(index);
    try {
      const count = (op: string): number => m.mount.server.opCounts.get(op) ?? 0;
      const first = await python(REOPEN, join(m.dir, FILE), ref, '2');
      expect(first.stdout.trim()).toBe('0');
      const before = { open: count('OPEN'), flush: count('FLUSH'), release: count('RELEASE') };
      // The first open may reach the main thread before the thread has loaded the index; no more.
      expect(before.open).toBeGreaterThanOrEqual(1);
      expect(before.open).toBeLessThanOrEqual(2);
      expect(m.mount.server.threadCounts.get('OPEN')).toBeGreaterThanOrEqual(1);
      const r = await python(REOPEN, join(m.dir, FILE), ref, '20');
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('0');
      expect({ open: count('OPEN'), flush: count('FLUSH'), release: count('RELEASE') }).toEqual(before);
      expect(count('READ')).toBeGreaterThan(0);
    } finally {
      await m.close();
    }
  });

  it('lists directories without OPENDIR or RELEASEDIR requests once the kernel has its ENOSYS', async (ctx) => {
    const m = await mountIndex(index);
    try {
      // A kernel without zero-message opendirs (before Linux 5.1) must get every OPENDIR answered:
      // nothing to see there, said as a skip rather than a silent pass.
      if (!((m.mount.server.init?.offered ?? 0n) & InitFlag.NO_OPENDIR_SUPPORT)) {
        ctx.skip();
        return;
      }
      const count = (op: string): number => m.mount.server.opCounts.get(op) ?? 0;
      const first = await python(LISTDIRS, m.dir, tree, '1');
      expect(first.stdout.split('\n')[0]).toBe('0');
      const dirs = Number(first.stdout.split('\n')[1]);
      expect(dirs).toBeGreaterThan(3);
      const before = { opendir: count('OPENDIR'), releasedir: count('RELEASEDIR') };
      // The first may reach the main thread before the thread has loaded the index, and be answered.
      expect(before.opendir).toBeGreaterThanOrEqual(1);
      expect(before.opendir).toBeLessThanOrEqual(2);
      const r = await python(LISTDIRS, m.dir, tree, '3');
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n')[0]).toBe('0');
      expect({ opendir: count('OPENDIR'), releasedir: count('RELEASEDIR') }).toEqual(before);
    } finally {
      await m.close();
    }
  });

  it('answers ioctls (isatty) with ENOTTY in the reader thread, each one', async () => {
    const m = await mountIndex(index);
    try {
      const probe = String.raw`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(sum(os.isatty(fd) for _ in range(int(sys.argv[2]))))
try:
    import fcntl, termios; fcntl.ioctl(fd, termios.TCGETS, bytes(64)); print('no error')
except OSError as e: print(e.errno)
`;
      const warm = await python(probe, join(m.dir, FILE), '1'); // the thread has the index from here on
      expect(warm.stdout.split('\n')[0]).toBe('0');
      const before = m.mount.server.threadCounts.get('IOCTL') ?? 0;
      const r = await python(probe, join(m.dir, FILE), '50');
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n').slice(0, 2)).toEqual(['0', '25']); // not a tty; ENOTTY
      // The kernel keeps no "unsupported" for IOCTL: every call is a request, none for the main thread.
      expect((m.mount.server.threadCounts.get('IOCTL') ?? 0) - before).toBe(51);
    } finally {
      await m.close();
    }
  });
});
