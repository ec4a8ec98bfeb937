/**
 * ImageFilesystem's operations called directly (no kernel): readdir cookies across small reply
 * buffers, reads clamped at the end of a file, lseek, xattrs, errors; and a read the tiers cannot
 * satisfy failing with EIO within the read timeout.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFilesystem } from '../../src/fs/image-fs.js';
import { Errno, FuseErrno, makeDev, S_IFDIR, SEEK_DATA, SEEK_HOLE, type DirEntryPlus, type RequestContext } from '../../src/fuse/index.js';
import type { ImageIndex } from '../../src/index/reader.js';
import { openBlobStore } from '../../src/oci/index.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/storage.js';
import type { LayerSource } from '../../src/storage/types.js';
import { fixture } from '../support/fixtures/index.js';
import { CAPABILITY } from '../support/fixtures/images/basic.js';
import { indexImage } from './helpers.js';

const ctx = (): RequestContext => ({ uid: 0, gid: 0, pid: 1, signal: new AbortController().signal });
const errnoOf = async (p: Promise<unknown>): Promise<number | undefined> =>
  p.then(() => undefined, (err: unknown) => (err instanceof FuseErrno ? err.errno : -1));

describe('ImageFilesystem operations', () => {
  let index: ImageIndex;
  let storage: Storage;
  let fs: ImageFilesystem;
  let cacheDir: string;

  beforeAll(async () => {
    index = await indexImage((await fixture('basic')).ref);
    cacheDir = await mkdtemp(join(tmpdir(), 'clip-fs-ops-'));
    storage = await openStorage({ source: new CheckpointSource(openBlobStore(index.image.location)), cacheDir });
    fs = new ImageFilesystem(index, storage);
  });
  afterAll(async () => {
    await storage.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('lists a directory of 200 entries in small pages, each cookie resuming exactly after the last entry', async () => {
    const dir = index.resolvePathOrThrow('usr/share/many');
    for (const plus of [false, true]) {
      const names: string[] = [];
      let offset = 0;
      let pages = 0;
      for (;;) {
        const req = { fh: 0, offset, size: 1024 };
        const page = plus ? await fs.readdirplus(dir, req) : await fs.readdir(dir, req);
        if (page.length === 0) break;
        pages++;
        for (const e of page) names.push(e.name.toString());
        offset = page.at(-1)!.next;
        if (plus) {
          const entries = (page as DirEntryPlus[]).filter((e) => e.name !== '.' && e.name !== '..');
          expect(entries.every((e) => e.entry?.attr.ino === e.ino)).toBe(true);
        }
      }
      expect(pages).toBeGreaterThan(3);
      expect(names.slice(0, 2)).toEqual(['.', '..']);
      expect(names.slice(2)).toEqual(Array.from({ length: 200 }, (_, i) => `file-${String(i).padStart(3, '0')}.txt`));
    }
  });

  it('gives attributes: root links, directory size, blocks, device numbers, nanoseconds', async () => {
    const root = await fs.getattr(1);
    let subdirs = 0;
    index.readdir(1, 0, (_n, _i, mode) => void ((mode & 0o170000) === S_IFDIR && subdirs++));
    expect(root.nlink).toBe(2 + subdirs);
    expect(root.size).toBe(4096);
    const lib = await fs.getattr(index.resolvePathOrThrow('usr/lib/libdemo.so.1'));
    expect(lib.blocks).toBe(Math.ceil(1_500_000 / 512));
    expect((await fs.getattr(index.resolvePathOrThrow('dev/loop0'))).rdev).toBe(makeDev(7, 0));
    expect((await fs.getattr(index.resolvePathOrThrow('home/user/notes.txt'))).mtime.nsec).toBe(999_999_999);
    const tool = await fs.lookup(index.resolvePathOrThrow('usr/bin'), Buffer.from('tool'));
    const alias = await fs.lookup(index.resolvePathOrThrow('usr/bin'), Buffer.from('tool-lower-link'));
    expect(alias!.ino).toBe(tool!.ino);
    expect(tool!.attr.nlink).toBe(3);
    expect(await fs.lookup(1, Buffer.from('nope'))).toBeNull();
    expect(await errnoOf(fs.getattr(index.inodeCount + 1))).toBe(Errno.ENOENT);
  });

  it('reads clamped at the end of the file, seeks data and holes, refuses writes', async () => {
    const ino = index.resolvePathOrThrow('etc/hostname');
    const { fh } = await fs.open(ino, 0);
    expect(Buffer.from(await fs.read(ino, fh!, 0, 4096, ctx())).toString()).toBe('clip-basic-2\n');
    expect(Buffer.from(await fs.read(ino, fh!, 5, 3, ctx())).toString()).toBe('bas');
    expect((await fs.read(ino, fh!, 13, 10, ctx())).length).toBe(0);
    expect(await fs.lseek(ino, fh!, 3, SEEK_DATA)).toBe(3);
    expect(await fs.lseek(ino, fh!, 3, SEEK_HOLE)).toBe(13);
    expect(await errnoOf(fs.lseek(ino, fh!, 13, SEEK_DATA))).toBe(Errno.ENXIO);
    fs.release(ino);
    expect(fs.openFiles).toBe(0);
    expect(await errnoOf(fs.open(ino, 1))).toBe(Errno.EROFS);
    expect(await errnoOf(fs.access(ino, 2))).toBe(Errno.EROFS);
    expect(await errnoOf(fs.readlink(ino))).toBe(Errno.EINVAL);
    expect((await fs.readlink(index.resolvePathOrThrow('bin'))).toString()).toBe('usr/bin');
  });

  it('answers xattrs from the index, security.capability included', async () => {
    const ino = index.resolvePathOrThrow('usr/bin/ping-like');
    expect(await fs.listxattr(ino)).toEqual(['security.capability', 'user.comment']);
    expect((await fs.getxattr(ino, 'security.capability'))?.equals(CAPABILITY)).toBe(true);
    // No such attribute: null (the server answers ENODATA without an exception; test/fs/fixtures
    // checks the answer through a real mount).
    expect(await fs.getxattr(ino, 'security.selinux')).toBeNull();
  });

  it('fails a read that no tier can satisfy with EIO, within the read timeout', async () => {
    const dead: LayerSource = {
      async readUncompressed() {
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      },
    };
    const dir = await mkdtemp(join(tmpdir(), 'clip-fs-ops-dead-'));
    const s = await openStorage({ source: dead, cacheDir: dir, readTimeoutMs: 500 });
    try {
      const f = new ImageFilesystem(index, s);
      const ino = index.resolvePathOrThrow('opt/app/large.bin');
      const { fh } = await f.open(ino, 0);
      const started = Date.now();
      expect(await errnoOf(f.read(ino, fh!, 0, 65536, ctx()))).toBe(Errno.EIO);
      expect(Date.now() - started).toBeLessThan(20_000); // not the 30 s default
    } finally {
      await s.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
