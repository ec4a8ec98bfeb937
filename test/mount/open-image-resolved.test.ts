/**
 * An image handed over as resolved (MountConfig.resolved: the cached index, its manifest, the blobs'
 * location): opened without resolving anything, its blobs read from the location handed over, and
 * an index that is not the manifest's refused with an error naming the file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { openImageArg } from '../../src/mount/open-image.js';
import { fixture } from '../support/fixtures/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-resolved-'));
});
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

describe('openImageArg with a resolved image', () => {
  it('opens the handed index, reads blobs from the handed location, and refuses an index of another manifest', async () => {
    const fx = await fixture('overlay');
    const cacheDir = join(tmp, 'cache');
    const first = await openImageArg(fx.ref, { cacheDir });
    await first.close();
    expect(first.indexFile).toBeDefined();
    expect(first.location).toBeDefined();
    const manifest = first.index.image.manifestDigest;

    // The argument is not even looked at: everything comes from the handoff.
    const handed = await openImageArg('no-such-image-is-resolved', {
      cacheDir, resolved: { indexFile: first.indexFile!, manifest, location: first.location! },
    });
    try {
      expect(handed.origin).toBe('cache');
      expect(handed.location).toBe(first.location);
      expect(handed.index.buffer.equals(first.index.buffer)).toBe(true);
      // A layer's first bytes, through the handed location.
      const layer = handed.layers[0]!;
      const body = await handed.blobs.openBlobRange({ digest: layer.digest, size: layer.compressedSize }, 0, 2);
      const bytes: Buffer[] = [];
      for await (const b of body) bytes.push(b as Buffer);
      expect(Buffer.concat(bytes)).toHaveLength(2);
    } finally {
      await handed.close();
    }

    const other = `sha256:${'0'.repeat(64)}`;
    await expect(openImageArg('x', { cacheDir, resolved: { indexFile: first.indexFile!, manifest: other, location: first.location! } }))
      .rejects.toThrow(new RegExp(`is the index of ${manifest}, not of ${other}`));
  }, 120_000);
});
