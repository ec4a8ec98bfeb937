/**
 * The restore scenario of snapshotter.test.ts, run as `node --import tsx restore-child.ts ROOT`:
 * three fixture images indexed into ROOT/cache (as rpull leaves them), each image's last layer a
 * committed remote snapshot in the store, then a new Snapshotter's restore() with the real
 * ImageMounts watched for how many mounts are under way at once. Prints one JSON line.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { handoffOf, openImageArg } from '../../src/mount/open-image.js';
import { liveHolder, serverFiles } from '../../src/server/paths.js';
import { ImageMounts } from '../../src/snapshotter/image-mounts.js';
import { RemoteImages } from '../../src/snapshotter/remote.js';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import { SnapshotStore, type RemoteLayer } from '../../src/snapshotter/store.js';
import { fixture } from '../support/fixtures/index.js';

/** The real ImageMounts, watched: how many ensure() calls are under way at once. */
class WatchedMounts extends ImageMounts {
  inFlight = 0;
  peak = 0;

  override async ensure(image: Pick<RemoteLayer, 'manifest' | 'location' | 'image'>): Promise<string> {
    this.peak = Math.max(this.peak, ++this.inFlight);
    try {
      return await super.ensure(image);
    } finally {
      this.inFlight--;
    }
  }
}

const root = process.argv[2]!;
const cacheDir = join(root, 'cache');
const images: Array<{ manifest: string; location: string }> = [];
for (const name of ['basic', 'overlay', 'longnames'] as const) {
  const img = await openImageArg((await fixture(name)).ref, { cacheDir });
  await img.close();
  const { manifest, location } = handoffOf(img)!;
  images.push({ manifest, location });
}
await closeScanPool();
const store = new SnapshotStore(join(root, 'restore.lmdb'));
store.transaction((tx) => images.forEach((im, i) => tx.put(`pulled-${i}`, {
  id: tx.nextId(), kind: 'COMMITTED', parent: '', labels: {}, created: 0, updated: 0, remote: { ...im, position: 0, layers: 1 },
})));
const mounts = new WatchedMounts({ root, cacheDir });
const served: number[] = [];
try {
  await new Snapshotter(root, store, new RemoteImages({ cacheDir }), mounts).restore();
  for (const { manifest } of images) if (mounts.isMounted(manifest)) served.push((await readdir(mounts.mountpoint(manifest))).length);
} finally {
  for (const { manifest } of images) await mounts.release(manifest, () => false).catch(() => undefined);
  await store.close();
}
const unmounted = images.every(({ manifest }) => !mounts.isMounted(manifest));
// The node's server ends once it has no mount (5 s after its last request).
for (let i = 0; i < 200 && (liveHolder(serverFiles(cacheDir).lock) ?? 0) > 0; i++) await sleep(100);
const serverGone = (liveHolder(serverFiles(cacheDir).lock) ?? 0) === 0;
process.stdout.write(`${JSON.stringify({ images: images.length, peak: mounts.peak, served, unmounted, serverGone })}\n`);
