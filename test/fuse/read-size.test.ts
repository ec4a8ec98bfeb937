/**
 * The default largest READ (src/fuse/read-size.ts) is one a reader thread can splice: a reply of
 * that many bytes, from a file offset that is not on a page, goes through one Splicer in one piece
 * (into a pipe of ours here, where the server's goes into /dev/fuse), header first, bytes intact.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { loadLibc } from '../../src/fuse/libc.js';
import { OUT_HEADER_SIZE } from '../../src/fuse/protocol.js';
import { defaultMaxPages } from '../../src/fuse/read-size.js';
import { Splicer } from '../../src/fuse/splice.js';

const dir = mkdtempSync(join(tmpdir(), 'clip-read-size-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the default largest READ', () => {
  it('is at most 1 MiB and fits one splice from an unaligned offset', () => {
    const pages = defaultMaxPages();
    expect(pages).toBeGreaterThanOrEqual(16);
    expect(pages).toBeLessThanOrEqual(256);
    const length = pages * 4096;
    const data = randomBytes(length + 8192);
    const file = join(dir, 'data');
    writeFileSync(file, data);
    const libc = loadLibc();
    const splicer = new Splicer();
    const [outRead, outWrite] = libc.pipe();
    const fd = openSync(file, 'r');
    try {
      libc.setPipeSize(outWrite, 2 * 1024 * 1024);
      expect(libc.setPipeSize(outWrite, 1024 * 1024)).toBeGreaterThanOrEqual(OUT_HEADER_SIZE + length);
      libc.setNonBlocking(outWrite); // a reply that did not fit shows as a short splice, not a hang
      libc.setNonBlocking(outRead);
      const position = 1000; // off the page
      expect(splicer.send(outWrite, 7n, fd, position, length, () => true)).toBe(true);
      const got = Buffer.alloc(OUT_HEADER_SIZE + length + 1);
      let n = 0;
      for (let k = libc.read(outRead, got.subarray(n)); k > 0; k = libc.read(outRead, got.subarray(n))) n += k;
      expect(n).toBe(OUT_HEADER_SIZE + length);
      expect(got.readUInt32LE(0)).toBe(OUT_HEADER_SIZE + length);
      expect(got.readBigUInt64LE(8)).toBe(7n);
      expect(got.subarray(OUT_HEADER_SIZE, n).equals(data.subarray(position, position + length))).toBe(true);
    } finally {
      closeSync(fd);
      libc.close(outRead);
      libc.close(outWrite);
      splicer.close();
    }
  });
});

describe('CLIP_FUSE_MAX_PAGES', () => {
  afterEach(() => {
    delete process.env.CLIP_FUSE_MAX_PAGES;
    vi.resetModules();
  });
  /** A fresh copy of the module: it computes the size once. */
  const fresh = async (value: string): Promise<{ defaultMaxPages: typeof defaultMaxPages }> => {
    process.env.CLIP_FUSE_MAX_PAGES = value;
    vi.resetModules();
    return import('../../src/fuse/read-size.js');
  };

  it('asks for smaller READs, never larger ones than a splice carries', async () => {
    const spliceable = defaultMaxPages();
    expect((await fresh('32')).defaultMaxPages()).toBe(Math.min(32, spliceable));
    expect((await fresh('256')).defaultMaxPages()).toBe(spliceable);
  });

  it('refuses a value that is not a page count from 1 to 256 as a usage error naming it', async () => {
    for (const bad of ['0', '257', '1.5', 'lots']) {
      const m = await fresh(bad);
      expect(() => m.defaultMaxPages()).toThrow(`CLIP_FUSE_MAX_PAGES=${bad}: not a whole number of pages from 1 to 256`);
      expect(() => m.defaultMaxPages()).toThrow(expect.objectContaining({ name: 'ClipError', code: 'EINVAL' }));
    }
  });
});
