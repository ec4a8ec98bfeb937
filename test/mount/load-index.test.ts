/**
 * Index files as the node server loads them: into shared memory (the FUSE reader thread answers
 * from the same bytes), once per file version (mounts of one image share it), and the index a
 * `clip mount --background` resolved is taken as the cache's without resolving the image again.
 */
import { copyFile, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { ImageFilesystem } from '../../src/fs/image-fs.js';
import type { IndexThreadData } from '../../src/fs/index-thread.js';
import { loadIndex, openImageArg } from '../../src/mount/open-image.js';
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
    const fs = new ImageFilesystem(a, { read: () => Promise.reject(new Error('not read here')) } as never);
    expect((fs.threadAnswers.data as IndexThreadData).index).toBe(a.buffer.buffer);
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

  it('openImageArg takes a resolved cached index as the cache\'s, and resolves the image when it is gone', async () => {
    const ref = (await fixture('basic')).ref;
    const img = await openImageArg(ref, { cacheDir: join(tmp, 'cache'), cachedIndex: indexFile });
    await img.close();
    expect(img.origin).toBe('cache');
    expect(img.index).toBe(await loadIndex(indexFile));
    const again = await openImageArg(ref, { cacheDir: join(tmp, 'cache'), cachedIndex: join(tmp, 'gone.clip') });
    await again.close();
    expect(again.origin).toBe('cache');
    expect(again.indexFile).toBe(indexFile);
  });
});
