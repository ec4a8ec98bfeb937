/**
 * Solo reads (src/fuse/solo-reads.ts): while this process serves one connection and a lone client
 * asks one thing at a time, the reader threads read the connection's descriptor blocking; a
 * second connection, a quiet spell and the unmount each take them back to their epoll loops.
 * Seen from outside: the descriptor's O_NONBLOCK flag (/proc/self/fdinfo) and where the threads
 * wait (/proc/self/task/TID/wchan: fuse_dev_do_read, do_epoll_wait on Linux 6.x; another kernel
 * may name its functions otherwise). Every read is compared with `umoci unpack`'s file meanwhile.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/index/reader.js';
import { readerPool } from '../../src/fuse/reader-pool.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { umociUnpack } from '../support/tools.js';
import { indexImage, mountIndex, type MountedImage } from '../fs/helpers.js';
import { waitUntil } from '../mount/helpers.js';
import { during, python, RANDOM_PREADS, run, XATTRS } from './tools.js';

const FILE = 'opt/app/large.bin';
const O_NONBLOCK = 0o4000;

/** This process's /dev/fuse descriptors. */
function fuseFds(): number[] {
  const fds: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === '/dev/fuse') fds.push(Number(fd));
    } catch {
      // closed meanwhile (the readdir's own descriptor)
    }
  }
  return fds;
}

function nonBlocking(fd: number): boolean {
  const flags = /^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
  return (parseInt(flags!, 8) & O_NONBLOCK) !== 0;
}

/** Where each reader thread sleeps: fuse_dev_do_read (a blocking read), do_epoll_wait, ... */
function waits(): string[] {
  return readerPool.threadIds().map((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/wchan`, 'utf8');
    } catch {
      return 'gone';
    }
  });
}

const blockedInRead = (): boolean => waits().includes('fuse_dev_do_read');

describe.skipIf(skipUnlessRoot())('solo reads', () => {
  let work: string;
  let index: ImageIndex;
  let ref: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-solo-'));
    const fx = await fixture('basic');
    index = await indexImage(fx.ref, { chunkSize: 64 * 1024 });
    ref = join(await umociUnpack(fx.layoutDir, 'latest', join(work, 'unpack')), FILE);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** A lone client until the pool reads blocking (its rate swings with the machine's load: try again). */
  async function loneUntilSolo(m: MountedImage): Promise<boolean> {
    for (let i = 0; i < 20 && !readerPool.solo; i++) await python(XATTRS, join(m.dir, FILE), '1000');
    return readerPool.solo;
  }

  it('a lone client is read blocking by one thread; 8 readers add a thread, which sits out for the next lone client; a second connection, a quiet spell and the unmount end it', async () => {
    const before = new Set(fuseFds());
    const m = await mountIndex(index, { mount: { maxReaderThreads: 2, readerIdleMs: 60_000 } });
    let m2: MountedImage | undefined;
    try {
      const fd = fuseFds().find((f) => !before.has(f))!;
      expect(fd).toBeDefined();
      expect(nonBlocking(fd)).toBe(true);
      await run('cat', [join(m.dir, FILE)]); // fetched and verified: later READs are the threads'

      expect(await loneUntilSolo(m)).toBe(true);
      expect(nonBlocking(fd)).toBe(false);
      // The client is gone: the thread waits for the next request in read(2), not epoll_wait.
      expect(await waitUntil(blockedInRead, 10_000)).toBe(true);
      const one = await python(RANDOM_PREADS, join(m.dir, FILE), ref, '1', '300', '4096,65536,300000');
      expect(one.stderr).toBe('');
      expect(one.stdout.trim()).toBe('0');

      // 8 readers queue requests: the probe sees it, and a second thread reads (blocking too):
      // a parked one, or one the pool starts.
      expect(readerPool.size - readerPool.parked).toBe(1);
      let reading = 1;
      const eight = await during(python(RANDOM_PREADS, join(m.dir, FILE), ref, '8', '1500', '4096'), () => {
        reading = Math.max(reading, readerPool.size - readerPool.parked);
      });
      expect(eight.stdout.trim()).toBe('0');
      expect(reading).toBe(2);

      // A lone client again: the added thread sits out (two threads reading blocking would take
      // turns on its requests), the other reads blocking.
      for (let i = 0; i < 20 && !(readerPool.solo && readerPool.parked === 1); i++) await python(XATTRS, join(m.dir, FILE), '1000');
      expect(readerPool.solo).toBe(true);
      expect(readerPool.parked).toBe(1);
      expect(await waitUntil(() => waits().sort().join() === 'do_epoll_wait,fuse_dev_do_read', 10_000)).toBe(true);
      // 8 readers again: the thread sitting out reads again (none is started).
      const tids = readerPool.threadIds();
      let unparked = false;
      const again = await during(python(RANDOM_PREADS, join(m.dir, FILE), ref, '8', '1500', '4096'), () => {
        unparked ||= readerPool.parked === 0 && readerPool.solo;
      });
      expect(again.stdout.trim()).toBe('0');
      expect(unparked).toBe(true);
      expect(readerPool.threadIds()).toEqual(tids);

      // A second connection: the threads must read both, so neither descriptor blocks.
      m2 = await mountIndex(index, { mount: { maxReaderThreads: 2, readerIdleMs: 60_000 } });
      expect(readerPool.solo).toBe(false);
      expect(nonBlocking(fd)).toBe(true);
      expect(await waitUntil(() => !blockedInRead(), 10_000)).toBe(true);
      const both = await Promise.all([m, m2].map((x) => python(RANDOM_PREADS, join(x.dir, FILE), ref, '1', '100', '4096')));
      for (const r of both) expect(r.stdout.trim()).toBe('0');
      // No lone client makes it solo while two connections are open.
      await python(XATTRS, join(m.dir, FILE), '3000');
      expect(readerPool.solo).toBe(false);
      await m2.close();
      m2 = undefined;

      // One connection again: solo again, until nothing comes for a while (the pool's 5 s check, twice).
      expect(await loneUntilSolo(m)).toBe(true);
      expect(await waitUntil(() => !readerPool.solo, 20_000)).toBe(true);
      expect(nonBlocking(fd)).toBe(true);
      expect(await waitUntil(() => waits().every((w) => w === 'do_epoll_wait'), 10_000)).toBe(true);

      // The unmount while the threads block in read: they see the end and let go.
      expect(await loneUntilSolo(m)).toBe(true);
      expect(await waitUntil(blockedInRead, 10_000)).toBe(true);
    } finally {
      await m2?.close();
      await m.close();
    }
    expect(readerPool.solo).toBe(false);
    expect(await waitUntil(() => readerPool.size === 0, 20_000)).toBe(true);
  });

  it('CLIP_FUSE_SOLO=0: a lone client is read through epoll_wait, the descriptor non-blocking', async () => {
    process.env.CLIP_FUSE_SOLO = '0'; // read with the policy, when the mount starts
    const before = new Set(fuseFds());
    const m = await mountIndex(index, { mount: { maxReaderThreads: 2, readerIdleMs: 60_000 } });
    try {
      const fd = fuseFds().find((f) => !before.has(f))!;
      for (let i = 0; i < 3; i++) await python(XATTRS, join(m.dir, FILE), '500');
      expect(readerPool.solo).toBe(false);
      expect(nonBlocking(fd)).toBe(true);
      expect(await waitUntil(() => waits().length > 0 && waits().every((w) => w === 'do_epoll_wait'), 10_000)).toBe(true);
    } finally {
      await m.close();
      delete process.env.CLIP_FUSE_SOLO;
    }
  });
});
