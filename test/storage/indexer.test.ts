/**
 * indexImage over real fixture layouts: the same bytes as a layer-by-layer build, layers read in
 * parallel, digests and diff_ids checked against the manifest and config, the per-manifest cache.
 */
import { createReadStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanLayer } from '../../src/archive/scan.js';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { imageInfoOf, indexedLayerOf } from '../../src/index/meta.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { LayoutSource } from '../../src/oci/layout.js';
import type { BlobReadOptions, Descriptor, ImageSource, ResolvedImage } from '../../src/oci/types.js';
import { cachedIndexPath, indexImage, loadCachedIndex, type IndexProgress } from '../../src/storage/indexer.js';
import { fixture } from '../support/fixtures/index.js';
import { tempDir } from './helpers.js';

let tmp: string;
beforeAll(async () => {
  tmp = await tempDir('clip-indexer-');
});
afterAll(async () => {
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

async function layoutOf(name: 'basic' | 'zstd' | 'overlay' | 'uncompressed'): Promise<LayoutSource> {
  const fx = await fixture(name);
  return new LayoutSource(fx.layoutDir, fx.tag);
}

/** The reference build: one layer after another in this thread. */
async function serialIndex(source: LayoutSource): Promise<Buffer> {
  const img = await source.resolve();
  const builder = new IndexBuilder(imageInfoOf(img));
  for (const layer of img.layers) {
    const scan = await scanLayer(await source.openBlob(layer.descriptor), { compression: layer.compression, name: layer.descriptor.digest });
    builder.addLayer(indexedLayerOf(layer, scan), scan);
  }
  return builder.build();
}

/** A source whose blob reads and resolution a test can change. */
function wrap(inner: LayoutSource, over: { resolve?: (img: ResolvedImage) => ResolvedImage; openBlob?: (d: Pick<Descriptor, 'digest' | 'size'>, o?: BlobReadOptions) => ReturnType<ImageSource['openBlob']> }): ImageSource {
  return {
    location: inner.location,
    resolve: async (o) => (over.resolve ?? ((x) => x))(await inner.resolve(o)),
    openBlob: (d, o) => (over.openBlob ?? ((dd, oo) => inner.openBlob(dd, oo)))(d, o),
    openBlobRange: (d, s, e, o) => inner.openBlobRange(d, s, e, o),
  };
}

describe('indexImage', () => {
  it.each(['basic', 'zstd', 'uncompressed'] as const)('%s: the same index as a serial build, from worker scans', async (name) => {
    const source = await layoutOf(name);
    const events: IndexProgress[] = [];
    const { bytes, index, image } = await indexImage(source, { onProgress: (e) => events.push(e) });
    expect(bytes.equals(await serialIndex(source))).toBe(true);
    expect(index.image.manifestDigest).toBe(image.manifestDigest);
    expect(index.layers.map((l) => l.diffId)).toEqual(image.config.rootfs.diff_ids);
    const total = image.layers.reduce((n, l) => n + l.descriptor.size, 0);
    expect(events[0]).toEqual({ kind: 'start', layers: image.layers.length, totalBytes: total });
    const streamed = events.reduce((n, e) => n + (e.kind === 'bytes' ? e.bytes : 0), 0);
    expect(streamed).toBe(total);
    expect(events.filter((e) => e.kind === 'layer').map((e) => (e as { layersDone: number }).layersDone).sort()).toEqual(image.layers.map((_, i) => i + 1));
  });

  it('reads layers in parallel: two blobs are open at once', async () => {
    const inner = await layoutOf('basic');
    expect((await inner.resolve()).layers.length).toBeGreaterThanOrEqual(2);
    let opened = 0;
    let release!: () => void;
    const both = new Promise<void>((r) => { release = r; });
    const source = wrap(inner, {
      openBlob: async (d, o) => {
        if (++opened === 2) release();
        // The first layer's stream only starts once a second one has been opened: serial indexing would hang here.
        await Promise.race([both, new Promise((_, rej) => setTimeout(() => rej(new Error('layers were not read in parallel')), 10_000))]);
        return inner.openBlob(d, o);
      },
    });
    const { bytes } = await indexImage(source, { concurrency: 2 });
    expect(bytes.equals(await serialIndex(inner))).toBe(true);
  });

  it("refuses a layer whose uncompressed digest is not the config's diff_id, naming the layer", async () => {
    const inner = await layoutOf('basic');
    const bad = `sha256:${'ab'.repeat(32)}`;
    const source = wrap(inner, { resolve: (img) => ({ ...img, layers: img.layers.map((l, i) => (i === 1 ? { ...l, diffId: bad } : l)) }) });
    const img = await inner.resolve();
    await expect(indexImage(source)).rejects.toMatchObject({
      code: 'EDIGEST', object: img.layers[1]!.descriptor.digest, message: expect.stringContaining(bad),
    });
  });

  it('refuses a blob whose bytes are not the digest the manifest names (a store that does not verify)', async () => {
    const inner = await layoutOf('basic');
    const img = await inner.resolve();
    const [first, second] = img.layers;
    // Layer 1's descriptor answered with layer 0's bytes, unverified.
    const source = wrap(inner, {
      openBlob: async (d) => createReadStream(inner.blobPath(d.digest === second!.descriptor.digest ? first!.descriptor.digest : d.digest)),
    });
    await expect(indexImage(source)).rejects.toMatchObject({ code: 'EDIGEST', object: second!.descriptor.digest });
  });

  it('refuses a layer over the inflated bytes limit naming it, and limits an index cannot record', async () => {
    const source = await layoutOf('basic');
    const img = await source.resolve();
    await expect(indexImage(source, { maxInflated: 4096 })).rejects.toMatchObject({
      code: 'EUNSUPPORTED', object: expect.stringMatching(new RegExp(img.layers.map((l) => l.descriptor.digest).join('|'))),
      message: expect.stringMatching(/--max-inflated/),
    });
    await expect(indexImage(source, { maxInflated: 2 ** 41 })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(indexImage(source, { maxEntries: 0 })).rejects.toMatchObject({ code: 'EINVAL' });
    for (const chunkSize of [0, 3000, 256, 2 ** 31]) {
      await expect(indexImage(source, { chunkSize })).rejects.toMatchObject({ code: 'EINVAL', object: String(chunkSize) });
    }
  });

  it('writes the index to -o and to the cache atomically, and loads it back by manifest digest', async () => {
    const source = await layoutOf('overlay');
    const cacheDir = path.join(tmp, 'cache');
    const output = path.join(tmp, 'overlay.clip');
    const { bytes, image, cachedAt } = await indexImage(source, { cacheDir, output });
    expect(cachedAt).toBe(cachedIndexPath(cacheDir, image.manifestDigest));
    expect(path.basename(cachedAt!)).toBe(`${image.manifestDigest.slice(7)}.clip`);
    const cached = await loadCachedIndex(cacheDir, image.manifestDigest);
    expect(cached?.buffer.equals(bytes)).toBe(true);
    expect(await readdir(path.dirname(cachedAt!))).toEqual([path.basename(cachedAt!)]);
    expect(await loadCachedIndex(cacheDir, `sha256:${'0'.repeat(64)}`)).toBeUndefined();
  });

  it('stops when aborted', async () => {
    const source = await layoutOf('basic');
    const ac = new AbortController();
    ac.abort(new Error('user gave up'));
    await expect(indexImage(source, { signal: ac.signal })).rejects.toThrow(/user gave up|cancelled/);
  });
});
