/**
 * An unmounted image's filesystem is garbage once its mount lets go of it: the node server mounts
 * and unmounts images for its whole life, and each kept filesystem holds its index (~1.2 MB for
 * debian-python) and its storage (bench/server/RESULTS.md, session 9: 10 images mounted and
 * unmounted 3 times left +13 MB of indexes before the fix).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFilesystem } from '../../src/fs/image-fs.js';
import type { IndexThreadData } from '../../src/fs/index-thread.js';
import type { ImageIndex } from '../../src/index/reader.js';
import { openBlobStore } from '../../src/oci/index.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { openStorage } from '../../src/storage/index.js';
import { fixture } from '../support/fixtures/index.js';
import { indexImage } from './helpers.js';

describe('ImageFilesystem lifetime', () => {
  let index: ImageIndex;
  let cacheDir: string;

  beforeAll(async () => {
    index = await indexImage((await fixture('basic')).ref);
    cacheDir = await mkdtemp(join(tmpdir(), 'clip-fs-life-'));
  });
  afterAll(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('is collected once its mount lets go of it and its storage, after its reader-thread data was made', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // A mount's life, as src/mount/serve.ts has it: a storage of its own, whose metrics name the filesystem.
    const served = async (): Promise<WeakRef<ImageFilesystem>> => {
      const storage = await openStorage({ source: new CheckpointSource(openBlobStore(index.image.location)), cacheDir });
      const fs = new ImageFilesystem(index, storage);
      storage.metrics.add(() => void fs.threadReads);
      expect((fs.threadAnswers.data as IndexThreadData).reads).toBeDefined(); // starts its once-a-second fold of thread reads
      await storage.close();
      return new WeakRef(fs);
    };
    const ref = await served();
    // A WeakRef keeps its target until the current job ends.
    await new Promise((r) => setTimeout(r, 0));
    gc();
    await new Promise((r) => setTimeout(r, 0));
    gc();
    expect(ref.deref()).toBeUndefined();
  });
});
