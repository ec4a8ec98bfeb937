/**
 * Index files as the node server loads them: into shared memory (the FUSE reader thread answers
 * from the same bytes), once per file version (mounts of one image share it), and the index a
 * client resolved and handed over is loaded the same way.
 */
import { copyFile, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
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
import * as F from '../../src/index/format.js';
import { fixture } from '../support/fixtures/index.js';
import { rec, reseal } from '../index/crafted.js';

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

  it('a handoff names the checksum it checked: that file is not checked field by field again, any other is', async () => {
    const ref = (await fixture('basic')).ref;
    const first = await openImageArg(ref, { cacheDir: join(tmp, 'cache') });
    await first.close();
    const resolved = handoffOf(first)!;
    expect(resolved.checked).toBe(first.index.checksum);
    // A file that passes its checksum but not the field checks (an entry of an unknown type).
    const bytes = Buffer.from(await readFile(indexFile));
    bytes.writeUInt32LE(0o140644, rec(bytes, 1) + F.E_MODE);
    const crafted = join(tmp, 'crafted.clip');
    await writeFile(crafted, reseal(bytes));
    const craftedSum = bytes.toString('hex', bytes.length - F.CHECKSUM_SIZE);
    await expect(loadIndex(crafted)).rejects.toMatchObject({ code: 'ECORRUPT', object: crafted, message: expect.stringMatching(/bad mode/) });
    // Named as checked under another checksum (the file changed after the check): checked again.
    await expect(loadIndex(crafted, resolved.checked)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/bad mode/) });
    // Named by its own checksum: taken as the caller checked it.
    expect((await loadIndex(crafted, craftedSum)).checksum).toBe(craftedSum);
  });
});
