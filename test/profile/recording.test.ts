/**
 * Recording through a real FUSE mount of the basic fixture: the reads a program makes arrive in
 * the profile in order, with their layer, range and inode; `recording` is true exactly while a
 * recorder is active; a mount's profile work finds a kept profile, stops recording and prefetches
 * it through storage.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProfileRecorder } from '../../src/profile/recorder.js';
import { encodeProfile } from '../../src/profile/format.js';
import { startMountProfile } from '../../src/profile/mount-profile.js';
import { indexDigestOf, storeLocalProfile } from '../../src/profile/store.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { indexImage, mountIndex, type MountedImage } from '../fs/helpers.js';
import { tempDir } from '../storage/helpers.js';

describe.skipIf(skipUnlessRoot())('recording a mount', () => {
  let mounted: MountedImage;
  let files: { path: string; ino: number; layer: number; offset: number; size: number }[];

  beforeAll(async () => {
    const fx = await fixture('basic');
    const index = await indexImage(fx.ref);
    mounted = await mountIndex(index, { cacheDir: await tempDir('clip-recording-') });
    files = [...index.walk()]
      .flatMap(({ ino, path }) => {
        const loc = index.dataLocation(ino);
        return loc && loc.size > 1000 ? [{ path, ino, layer: loc.layer, offset: loc.offset, size: loc.size }] : [];
      })
      .slice(0, 3);
    expect(files).toHaveLength(3);
  });
  afterAll(async () => {
    await mounted?.close();
  });

  it('notes every READ in first-access order while recording, and none after', async () => {
    const rec = new ProfileRecorder({ quietMs: 0 });
    expect(mounted.fs.recording).toBe(false);
    mounted.fs.recorder = rec;
    expect(mounted.fs.recording).toBe(true);
    for (const f of [files[1]!, files[0]!]) expect((await readFile(join(mounted.dir, f.path))).length).toBe(f.size);
    const ranges = rec.stop();
    expect(mounted.fs.recording).toBe(false);
    await readFile(join(mounted.dir, files[2]!.path));
    expect(ranges.map((r) => [r.layer, r.offset, r.length, r.ino])).toEqual([files[1]!, files[0]!].map((f) => [f.layer, f.offset, f.size, f.ino]));
    expect(ranges[0]!.atMs).toBe(0);
  });

  it("a mount's profile work finds a kept profile, stops recording, and prefetches it", async () => {
    const { index, storage, fs } = mounted;
    const cacheDir = storage.disk.dir;
    const layers = indexLayers(index);
    const f = files[2]!;
    await storeLocalProfile(cacheDir, index.image.manifestDigest, encodeProfile({
      manifestDigest: index.image.manifestDigest, indexDigest: indexDigestOf(index.buffer), layers: layers.map((l) => l.diffId),
      ranges: [{ layer: f.layer, offset: f.offset, length: f.size, atMs: 0, ino: f.ino }], learned: new Map(),
    }));
    const work = startMountProfile({ mode: 'auto', cacheDir, index, layers, fs, storage });
    expect(fs.recording).toBe(true); // until the lookup answers
    const found = await work.found;
    expect(found?.origin).toBe('cache');
    const result = await work.prefetched;
    expect(fs.recording).toBe(false);
    expect(result).toMatchObject({ pieces: 1, failed: 0 });
    expect(result!.bytes).toBeGreaterThanOrEqual(f.size);
    await work.finish();
    expect(await work.saved).toBeUndefined(); // a found profile is not replaced by this start's
  });
});
