/**
 * The index's view of each fixture image against `umoci unpack` of the same image: every path,
 * type, mode, owner, size, mtime, link target, device number, xattr, content hash and hardlink group.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanLayer } from '../../src/archive/scan.js';
import { ImageIndex } from '../../src/index/reader.js';
import { imageInfoOf, indexedLayerOf } from '../../src/index/meta.js';
import type { LayerCompression } from '../../src/index/types.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { LayoutSource } from '../../src/oci/layout.js';
import type { ResolvedImage } from '../../src/oci/types.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, type FixtureName } from '../support/fixtures/index.js';
import { snapshotTree, umociUnpack } from '../support/tools.js';
import { contentHashes, diffTrees, indexTree } from './tree-compare.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-index-umoci-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The uncompressed tar of a blob, decompressed by tools independent of our own decoders. */
function decompress(blob: Readable, compression: LayerCompression): AsyncIterable<Buffer> {
  if (compression === 'none') return blob;
  if (compression === 'gzip') return blob.pipe(createGunzip());
  const zstd = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'inherit'] });
  blob.pipe(zstd.stdin);
  return zstd.stdout;
}

async function indexFixture(name: FixtureName): Promise<{ index: ImageIndex; source: LayoutSource; img: ResolvedImage }> {
  const fx = await fixture(name);
  const source = new LayoutSource(fx.layoutDir, fx.tag);
  const img = await source.resolve();
  const builder = new IndexBuilder(imageInfoOf(img));
  for (const layer of img.layers) {
    const scan = await scanLayer(await source.openBlob(layer.descriptor), { compression: layer.compression, name: layer.descriptor.digest });
    builder.addLayer(indexedLayerOf(layer, scan), scan);
  }
  const index = new ImageIndex(builder.build(), `${name}.clipindex`);
  return { index, source, img };
}

describe.skipIf(skipUnlessRoot())('index view equals umoci unpack', () => {
  const names: FixtureName[] = ['basic', 'overlay', 'longnames', 'umoci', 'docker', 'zstd', 'uncompressed', 'big'];
  it.each(names)('%s', async (name) => {
    const { index, source, img } = await indexFixture(name);
    const hashes = await contentHashes(index, (i) => {
      const layer = img.layers[i]!;
      return (async function* () {
        yield* decompress(await source.openBlob(layer.descriptor), layer.compression);
      })();
    });
    const fx = await fixture(name);
    const expected = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag!, join(tmp, name)));
    const actual = indexTree(index, hashes);
    expect(diffTrees(expected, actual, { contents: true })).toEqual([]);
    expect(actual.size).toBe(expected.size);
    await rm(join(tmp, name), { recursive: true, force: true });
  });

  it('the comparison sees a difference in every field it compares', async () => {
    const { index, source, img } = await indexFixture('basic');
    const hashes = await contentHashes(index, (i) => (async function* () {
      yield* decompress(await source.openBlob(img.layers[i]!.descriptor), img.layers[i]!.compression);
    })());
    const base = indexTree(index, hashes);
    expect(diffTrees(base, indexTree(index, hashes), { contents: true })).toEqual([]);
    const someFile = [...base].find(([, n]) => n.type === 'file' && n.size > 0)![0];
    const mutations: Array<[string, (n: Record<string, unknown>) => void]> = [
      ['mode', (n) => { n.mode = (n.mode as number) ^ 0o100; }],
      ['uid', (n) => { n.uid = 4242; }],
      ['size', (n) => { n.size = (n.size as number) + 1; }],
      ['mtimeNs', (n) => { n.mtimeNs = '1'; }],
      ['sha256', (n) => { n.sha256 = '00'; }],
      ['xattrs', (n) => { n.xattrs = { 'user.x': '00' }; }],
      ['nlink', (n) => { n.nlink = 9; }],
    ];
    for (const [field, mutate] of mutations) {
      const changed = indexTree(index, hashes);
      mutate(changed.get(someFile)! as unknown as Record<string, unknown>);
      expect(diffTrees(base, changed, { contents: true }).join('\n')).toContain(`${someFile}: ${field}`);
    }
    const fewer = indexTree(index, hashes);
    fewer.delete(someFile);
    expect(diffTrees(base, fewer)).toContain(`${someFile}: missing from the index`);
  });
});
