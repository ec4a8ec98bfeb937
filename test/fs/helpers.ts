/**
 * Index an image and mount it in this process. Tests read
 * the mount only from child processes (python, cat, chroot): a synchronous or libuv-pool read of our
 * own mount from this thread could wait on the very pool the server needs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageFilesystem, imageMountOptions } from '../../src/fs/image-fs.js';
import { mount, type Mount, type MountOptions } from '../../src/fuse/index.js';
import type { ImageIndex } from '../../src/index/reader.js';
import { openBlobStore, openImage } from '../../src/oci/index.js';
import { CheckpointSource } from '../../src/storage/checkpoint-source.js';
import { openStorage } from '../../src/storage/index.js';
import { indexImage as indexImageFrom } from '../../src/storage/indexer.js';
import type { Storage } from '../../src/storage/storage.js';

/** The product's indexer over an image reference (no cache: each test indexes afresh). */
export async function indexImage(ref: string, opts: { chunkSize?: number } = {}): Promise<ImageIndex> {
  const source = openImage(ref);
  try {
    return (await indexImageFrom(source, opts)).index;
  } finally {
    await source.close?.();
  }
}

export interface MountedImage {
  dir: string;
  index: ImageIndex;
  storage: Storage;
  fs: ImageFilesystem;
  mount: Mount;
  /** Unmount, close the storage, remove the mountpoint and the cache dir (when this made it). */
  close(): Promise<void>;
}

export async function mountIndex(index: ImageIndex, opts: { cacheDir?: string; readTimeoutMs?: number; mount?: MountOptions } = {}): Promise<MountedImage> {
  const dir = await mkdtemp(join(tmpdir(), 'clip-fs-mnt-'));
  const ownCache = opts.cacheDir === undefined;
  const cacheDir = opts.cacheDir ?? (await mkdtemp(join(tmpdir(), 'clip-fs-cache-')));
  const storage = await openStorage({
    source: new CheckpointSource(openBlobStore(index.image.location)),
    cacheDir,
    ...(opts.readTimeoutMs !== undefined ? { readTimeoutMs: opts.readTimeoutMs } : {}),
  });
  const fs = new ImageFilesystem(index, storage);
  let m: Mount;
  try {
    m = await mount(fs, dir, { fsname: 'clip-test', subtype: 'clip', ...imageMountOptions(), ...opts.mount });
  } catch (err) {
    await storage.close();
    throw err;
  }
  return {
    dir, index, storage, fs, mount: m,
    async close() {
      // Not busy, it ends at once; the wait after an abort is the reader threads ending (over 2 s under load).
      await m.unmount({ timeoutMs: 20_000 });
      await storage.close();
      await rm(dir, { recursive: true, force: true });
      if (ownCache) await rm(cacheDir, { recursive: true, force: true });
    },
  };
}
