/**
 * A reader thread serving a lone client's requests one at a time reads its descriptor blocking
 * (src/fuse/blocking-wake.ts, solo-reads.ts): seen in the kernel as the thread sitting in read(2) rather than
 * epoll_wait(2). Blocked there it sees no wake pipe, so the pool wakes it with a request of its own
 * (a statfs of the mountpoint): a second mount given to it is served, and it still ends for idleness.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/index/reader.js';
import { readerPool } from '../../src/fuse/reader-pool.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { indexImage, mountIndex } from '../fs/helpers.js';
import { waitUntil } from '../mount/helpers.js';
import { python, RANDOM_PREADS, run } from './tools.js';

const FILE = 'opt/app/large.bin';
/** read(2)'s number, as /proc/PID/task/TID/syscall shows a thread blocked in it. */
const SYS_READ = process.arch === 'x64' ? 0 : process.arch === 'arm64' ? 63 : undefined;

/** A hang here (a request nobody reads) ends the client after this long: a failure, not a timing. */
const CLIENT_TIMEOUT_MS = 120_000;

const XATTRS = String.raw`
import os, sys
for _ in range(int(sys.argv[2])):
    try: os.getxattr(sys.argv[1], "user.missing")
    except OSError: pass
`;

/** The system call each reader thread is in now (-1: running). */
function readerSyscalls(): number[] {
  return readerPool.threadIds().map((tid) => {
    const f = readFileSync(`/proc/self/task/${tid}/syscall`, 'utf8').trim().split(' ')[0]!;
    return f === 'running' ? -1 : Number(f);
  });
}

describe.skipIf(skipUnlessRoot() || SYS_READ === undefined)('a reader thread blocked in read(2)', () => {
  let work: string;
  let index: ImageIndex;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-blocking-'));
    index = await indexImage((await fixture('basic')).ref, { chunkSize: 64 * 1024 });
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('blocks for a lone client, is woken for a second mount and serves it, and still ends when idle', async () => {
    process.env.CLIP_FUSE_SLEEP_MS = '400'; // read when a thread starts
    const a = await mountIndex(index, { mount: { maxReaderThreads: 2, readerIdleMs: 200 } });
    let b: Awaited<ReturnType<typeof mountIndex>> | undefined;
    try {
      const file = join(a.dir, FILE);
      // Requests one at a time: after a few the thread reads blocking. Seen between two loops (a
      // thread answering one shows as running); a loaded machine may need another loop.
      let blocked = false;
      for (let i = 0; i < 10 && !blocked; i++) {
        expect((await python(XATTRS, file, '200')).stderr).toBe('');
        blocked = readerSyscalls().includes(SYS_READ!);
      }
      expect(blocked).toBe(true);
      // A second connection for the same thread: only a wake makes it watch the new descriptor.
      b = await mountIndex(index, { mount: { maxReaderThreads: 2, readerIdleMs: 200 } });
      const listed = await run('ls', [join(b.dir, 'opt/app')], { timeoutMs: 20_000 });
      expect(listed.stdout).toContain('large.bin');
      await b.close();
      b = undefined;
      // Blocked again for the lone client, then quiet: woken for the sleep time, the thread ends.
      for (let i = 0; i < 10 && !readerSyscalls().includes(SYS_READ!); i++) await python(XATTRS, file, '200');
      expect(await waitUntil(() => a.mount.server.readerThreads === 0, 20_000)).toBe(true);
      // And a request after that starts a thread again.
      expect((await run('ls', [join(a.dir, 'opt/app')], { timeoutMs: 20_000 })).stdout).toContain('large.bin');
    } finally {
      await b?.close();
      await a.close();
      delete process.env.CLIP_FUSE_SLEEP_MS;
    }
  });
  // Session 14's stall: with a second thread waiting in epoll_wait on the descriptor, the lone
  // client's next request woke that thread (its epoll entry comes before the blocked read in the
  // kernel's queue of waiters, and the wake is exclusive); it stopped watching and went back to
  // sleep without reading it, and the blocked thread was never woken. Here the other threads park
  // (src/fuse/solo-reads.ts) before one blocks, and are unparked when 8 readers come.
  it.each([
    ['two fixed threads', { readerThreads: 2 }],
    ['threads that follow the load', { maxReaderThreads: 4, readerIdleMs: 60_000 }],
  ])('answers every request of a lone client, then many, then a lone one again (%s)', async (_, opts) => {
    const m = await mountIndex(index, { mount: opts });
    try {
      const file = join(m.dir, FILE);
      const ref = join(work, 'large.bin');
      const copied = await run('cp', [file, ref], { timeoutMs: CLIENT_TIMEOUT_MS });
      expect(copied.code).toBe(0);
      for (let round = 0; round < 3; round++) {
        // The lone client until a thread reads blocking (the others parked): the pool lets one only
        // a while after the last queue, so a few loops (a loaded machine may need more).
        let blocked = false;
        for (let i = 0; i < 40 && !blocked; i++) {
          const lone = await run('python3', ['-c', XATTRS, file, '300'], { timeoutMs: CLIENT_TIMEOUT_MS });
          expect(lone.code).toBe(0);
          blocked = readerSyscalls().includes(SYS_READ!);
        }
        expect(blocked).toBe(true);
        const many = await run('python3', ['-c', RANDOM_PREADS, file, ref, '8', '40', '1,4096,70000'], { timeoutMs: CLIENT_TIMEOUT_MS });
        expect(many.code).toBe(0);
        expect(many.stdout.trim()).toBe('0');
      }
      const last = await run('python3', ['-c', XATTRS, file, '300'], { timeoutMs: CLIENT_TIMEOUT_MS });
      expect(last.code).toBe(0);
    } finally {
      await m.close();
    }
  });
});
