/**
 * Index files as the node server loads them: into shared memory (the FUSE reader thread answers
 * from the same bytes), once per file version (mounts of one image share it), and the index a
 * client resolved and handed over is loaded the same way.
 */
import { copyFile, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { ImageFilesystem } from '../../src/fs/image-fs.js';
import type { IndexThreadData } from '../../src/fs/index-thread.js';
import { handoffOf, loadIndex, openImageArg } from '../../src/mount/open-image.js';
import { openBlobStore } from '../../src/oci/index.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { openStorage } from '../../src/storage/index.js';
import { fixture } from '../support/fixtures/index.js';

let tmp: string;
let indexFile: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-load-index-'));
  const img = await openImageArg((await fixture('basic')).ref, { cacheDir: join(tmp, 'cache') });
  await img.close();
  indexFile = img.indexFile!;
}, 120_000);
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

describe('loadIndex', () => {
  it('loads a file once into shared memory; the reader thread gets those bytes, not a copy', async () => {
    const a = await loadIndex(indexFile);
    const b = await loadIndex(indexFile);
    expect(b).toBe(a);
    expect(a.buffer.buffer).toBeInstanceOf(SharedArrayBuffer);
    const storage = await openStorage({ source: new CheckpointSource(openBlobStore(a.image.location)), cacheDir: join(tmp, 'cache') });
    try {
      const fs = new ImageFilesystem(a, storage);
      expect((fs.threadAnswers.data as IndexThreadData).index).toBe(a.buffer.buffer);
    } finally {
      await storage.close();
    }
  });

  it('a new version of the file (or another file) is loaded afresh', async () => {
    const a = await loadIndex(indexFile);
    const copy = join(tmp, 'copy.clip');
    await copyFile(indexFile, copy);
    const c = await loadIndex(copy);
    expect(c).not.toBe(a);
    expect(c.buffer.equals(a.buffer)).toBe(true);
    await utimes(copy, new Date(), new Date(Date.now() + 5000));
    expect(await loadIndex(copy)).not.toBe(c);
  });

  it('openImageArg loads a handed-over index (handoffOf) into the same shared memory', async () => {
    const ref = (await fixture('basic')).ref;
    const first = await openImageArg(ref, { cacheDir: join(tmp, 'cache') });
    await first.close();
    const resolved = handoffOf(first);
    expect(resolved?.indexFile).toBe(indexFile);
    const img = await openImageArg(ref, { cacheDir: join(tmp, 'cache'), resolved: resolved! });
    await img.close();
    expect(img.origin).toBe('cache');
    expect(img.index).toBe(await loadIndex(indexFile));
  });
});
