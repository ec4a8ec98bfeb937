import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayoutSource } from '../../src/oci/layout.js';
import type { BlobReadOptions, BlobStore, Descriptor } from '../../src/oci/types.js';
import { CheckpointSource, layerFromScan, type ResumableLayer } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { makeGzipLayout, tempDir } from './helpers.js';

const CHUNK = 64 * 1024;

/** Counts the compressed bytes and ranges asked of a real store. */
class CountingStore implements BlobStore {
  readonly ranges: [number, number][] = [];
  bytes = 0;
  constructor(private readonly inner: BlobStore) {}
  get location(): string {
    return this.inner.location;
  }
  openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, opts?: BlobReadOptions) {
    return this.inner.openBlob(desc, opts);
  }
  openBlobRange(desc: Pick<Descriptor, 'digest' | 'size'>, start: number, end: number, opts: BlobReadOptions = {}) {
    this.ranges.push([start, end]);
    return this.inner.openBlobRange(desc, start, end, { ...opts, onBytes: (n) => (this.bytes += n) });
  }
}

describe('reading gzip layers by range from the nearest checkpoint', () => {
  let root: string;
  let tar: Buffer;
  let layer: ResumableLayer;
  let store: CountingStore;

  beforeAll(async () => {
    root = await tempDir();
    const made = await makeGzipLayout(root, { files: 16, bytesEach: 200_000, chunkSize: CHUNK, span: 256 * 1024 });
    tar = made.tar;
    layer = layerFromScan(made.scan);
    store = new CountingStore(new LayoutSource(made.layoutDir));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('serves verified bytes through the read path, fetching a small part of the blob for a small read', async () => {
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      const s = new Storage({ disk, source: new CheckpointSource(store) });
      const off = Math.floor(tar.length * 0.7);
      expect((await s.read(layer, off, 3000)).equals(tar.subarray(off, off + 3000))).toBe(true);
      expect(store.ranges.length).toBe(1);
      expect(store.bytes).toBeLessThan(layer.compressedSize / 3);
      // The rest of the layer, in a few big reads: byte-exact, every chunk verified.
      expect((await s.read(layer, 0, tar.length)).equals(tar)).toBe(true);
      expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(0);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('produces exactly the requested uncompressed range from any checkpoint', async () => {
    const source = new CheckpointSource(store);
    for (const [start, end] of [
      [0, 10],
      [CHUNK * 7, CHUNK * 9],
      [tar.length - CHUNK - 3, tar.length],
    ] as const) {
      const parts: Buffer[] = [];
      for await (const p of await source.readUncompressed(layer, start, end, AbortSignal.timeout(10_000))) parts.push(Buffer.from(p));
      expect(Buffer.concat(parts).equals(tar.subarray(start, end)), `${start}-${end}`).toBe(true);
    }
  });
});
