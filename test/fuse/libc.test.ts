/**
 * The page-cache question of the reader threads (src/fuse/libc.ts): a file's mapping and mincore
 * through it, on a real file.
 */
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLibc } from '../../src/fuse/libc.js';

describe('which pages of a file are in the page cache (mapFile, resident)', () => {
  let dir: string;
  let fd: number;
  const size = 64 * 4096;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-libc-'));
    const path = join(dir, 'f');
    writeFileSync(path, Buffer.alloc(size, 7));
    fd = openSync(path, 'r');
  });
  afterAll(async () => {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });

  it('reports a page just read as cached, one byte a page of the range asked', () => {
    const libc = loadLibc();
    const map = libc.mapFile(fd, size);
    expect(map).toBeGreaterThan(0);
    try {
      readSync(fd, Buffer.alloc(4096), 0, 4096, 10 * 4096);
      const vec = new Uint8Array(4).fill(0xfe);
      expect(libc.resident(map, 8 * 4096, 4 * 4096, vec)).toBe(0);
      // Page 10 of the file is the third of the range; mincore writes one byte a page, bit 0 its answer.
      expect(vec[2]! & 1).toBe(1);
      expect(vec.every((b) => (b & 0xfe) === 0)).toBe(true);
      // An offset that is not page-aligned: EINVAL, nothing read through the mapping.
      expect(libc.resident(map, 100, 4096, vec)).toBe(-22);
    } finally {
      libc.unmap(map, size);
    }
  });
});
