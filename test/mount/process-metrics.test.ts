/**
 * What a mount holds on its own: its index, and the windows of the learned checkpoints its source
 * keeps (a startup profile hands them over; they stay for the mount's life). A real image, store,
 * source and filesystem; checkpoints handed over through the store, as a found profile does.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { ImageFilesystem } from '../../src/fs/image-fs.js';
import { openImageArg, openMountStorage } from '../../src/mount/open-image.js';
import { mountMemory } from '../../src/mount/process-metrics.js';
import { fixture } from '../support/fixtures/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-mount-memory-'));
});
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

describe('mountMemory', () => {
  it('counts the index and the learned windows the mount keeps, per mount', async () => {
    const fx = await fixture('overlay');
    const image = await openImageArg(fx.ref, { cacheDir: join(tmp, 'cache') });
    const { storage, source } = await openMountStorage(image);
    const other = await openMountStorage(image);
    try {
      const fs = new ImageFilesystem(image.index, storage);
      const before = mountMemory({ image, fs, source });
      expect(before.indexBytes).toBe(image.index.buffer.length);
      expect(before.learnedWindowBytes).toBe(0);
      const gzip = image.layers.filter((l) => l.compression === 'gzip' && l.uncompressedSize > 1000);
      expect(gzip.length).toBeGreaterThan(0);
      let handed = 0;
      for (const [i, layer] of gzip.entries()) {
        const window = Buffer.alloc(100 + i);
        expect(storage.addLearnedCheckpoints(layer, [{ out: 1000, inBits: 8, window }, { out: 900, inBits: 16, window }])).toBe(2);
        handed += 2 * window.length;
      }
      expect(mountMemory({ image, fs, source }).learnedWindowBytes).toBe(handed);
      // Another mount's store of the same image keeps its own.
      expect(mountMemory({ image, fs, source: other.source }).learnedWindowBytes).toBe(0);
    } finally {
      await other.storage.close();
      await storage.close();
      await image.close();
    }
  });
});
