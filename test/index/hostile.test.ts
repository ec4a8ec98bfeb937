/**
 * The hostile fixture (paths with "..", absolute names, symlinks pointing out of the root, a hardlink
 * to outside) through the real scanner and the merge: nothing lands outside the root, and the
 * hardlink whose target cannot exist inside the image is an error naming it.
 */
import { describe, expect, it } from 'vitest';
import { scanLayer } from '../../src/archive/scan.js';
import type { LayerScan } from '../../src/archive/types.js';
import { imageInfoOf, indexedLayerOf } from '../../src/index/meta.js';
import { ImageIndex } from '../../src/index/reader.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { LayoutSource } from '../../src/oci/layout.js';
import { fixture } from '../support/fixtures/index.js';
import { pathsOf } from './layers.js';

async function hostile(): Promise<{ builder: () => IndexBuilder; layer: Parameters<IndexBuilder['addLayer']>[0]; scan: LayerScan }> {
  const fx = await fixture('hostile');
  const source = new LayoutSource(fx.layoutDir, fx.tag);
  const img = await source.resolve();
  const l = img.layers[0]!;
  const scan = await scanLayer(await source.openBlob(l.descriptor), { compression: l.compression, name: l.descriptor.digest });
  return { builder: () => new IndexBuilder(imageInfoOf(img)), layer: indexedLayerOf(l, scan), scan };
}

describe('hostile layer', () => {
  it('refuses the hardlink to a target outside the image, naming it', async () => {
    const { builder, layer, scan } = await hostile();
    expect(() => builder().addLayer(layer, scan)).toThrow(expect.objectContaining({
      code: 'ECORRUPT', message: expect.stringMatching(/hard-outside.*hardlink target "etc\/passwd" does not exist/),
    }));
  });

  it('keeps everything else inside the root, symlinked parents resolved within it', async () => {
    const { builder, layer, scan } = await hostile();
    const b = builder();
    b.addLayer(layer, { ...scan, entries: scan.entries.filter((e) => e.type !== 'hardlink') });
    const index = new ImageIndex(b.build(), 'hostile.clipindex');
    const paths = pathsOf(index);
    expect(paths.every((p) => p.startsWith('/') && !p.split('/').includes('..'))).toBe(true);
    // "evil" -> /etc and "up" -> ../../../../ resolve inside the image's root, as in a chroot.
    expect(paths).toContain('/etc/clip-through-symlink');
    expect(paths).toContain('/clip-through-relative-symlink');
    expect(paths).toContain('/dot/slash/name');
    expect(index.readlink(index.resolvePath('/evil')).toString()).toBe('/etc');
  });
});
