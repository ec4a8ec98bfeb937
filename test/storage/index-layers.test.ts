import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageIndex } from '../../src/index/reader.js';
import { buildIndex } from '../../src/index/writer.js';
import { LayoutSource } from '../../src/oci/layout.js';
import { CheckpointSource, layerFromScan } from '../../src/storage/checkpoint-source.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { indexLayers } from '../../src/storage/index-layers.js';
import { Storage } from '../../src/storage/storage.js';
import { makeGzipLayout, tempDir, type GzipLayout } from './helpers.js';

describe('layers of an index file', () => {
  let root: string;
  let made: GzipLayout;
  let index: ImageIndex;

  beforeAll(async () => {
    root = await tempDir();
    made = await makeGzipLayout(root, { files: 12, bytesEach: 300_000, chunkSize: 128 * 1024, span: 512 * 1024 });
    const { scan } = made;
    const bytes = buildIndex(
      {
        reference: `oci:${made.layoutDir}`,
        location: `oci:${made.layoutDir}`,
        manifestDigest: `sha256:${'0'.repeat(64)}`,
        manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
        platform: { os: 'linux', architecture: 'amd64' },
        config: Buffer.from('{}'),
        layers: [
          {
            digest: scan.digest,
            diffId: scan.diffId,
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
            compression: 'gzip',
            compressedSize: scan.compressedSize,
            uncompressedSize: scan.uncompressedSize,
          },
        ],
      },
      [scan],
    );
    index = new ImageIndex(bytes);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads a file named in the index through the read path, byte-exact, then from disk', async () => {
    const [layer] = indexLayers(index);
    expect(layer!.chunkDigest(0)).toEqual(made.scan.chunkDigests.subarray(0, 32));
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      const s = new Storage({ disk, source: new CheckpointSource(new LayoutSource(made.layoutDir)) });
      for (const name of ['f0.bin', 'f7.bin', 'f11.bin']) {
        const loc = index.dataLocation(index.resolvePath(`usr/lib/${name}`))!;
        const want = await readFile(path.join(made.srcDir, 'usr', 'lib', name));
        expect((await s.read(layer!, loc.offset, loc.size)).equals(want), name).toBe(true);
      }
      const snap = await s.metrics.snapshot();
      expect(snap['verifyFailures.source']).toBe(0);
      expect(snap['bytes.source']).toBeLessThan(made.tar.length);
      expect((await s.read(layer!, 0, made.tar.length)).equals(made.tar)).toBe(true);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the same compressed range, and where its inflation ends, as the scan does, for every chunk', () => {
    const [layer] = indexLayers(index);
    const fromScan = layerFromScan(made.scan);
    const cs = layer!.chunkSize;
    for (let start = 0; start < made.tar.length; start += cs) {
      const end = Math.min(start + cs, made.tar.length);
      const r = layer!.compressedRange(start, end);
      expect({ ...r, checkpoint: r.checkpoint.out }, `${start}`).toEqual({ ...fromScan.compressedRange(start, end), checkpoint: fromScan.compressedRange(start, end).checkpoint.out });
      expect(r.endOut! >= end && r.endOut! <= made.tar.length).toBe(true);
    }
  });
});
