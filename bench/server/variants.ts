/**
 * What the server memory benches share: images made from debian-python that share its two
 * layers, and the regular files of a mount to read.
 */
import { statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { blobPath, tagInLayout, writeJsonBlob, writeLayer } from '../../src/oci/build/index.js';

/** Images sharing debian-python's two layers, each with one small layer of its own, tagged v1... */
export async function variants(layout: string, count: number): Promise<string[]> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const desc = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'latest')!;
  const manifest = JSON.parse(await readFile(blobPath(layout, desc.digest), 'utf8')) as { config: { digest: string; mediaType: string }; layers: unknown[]; mediaType?: string };
  const config = JSON.parse(await readFile(blobPath(layout, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] }; history?: unknown[] };
  const tags: string[] = [];
  for (let i = 1; i <= count; i++) {
    const layer = await writeLayer(layout, { entries: [{ type: 'dir', path: 'app' }, { type: 'file', path: `app/v${i}.txt`, content: `variant ${i}\n` }] });
    const cfg = await writeJsonBlob(layout, manifest.config.mediaType, { ...config, rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, layer.diffId] }, history: [...(config.history ?? []), { created_by: `variant ${i}` }] });
    const man = await writeJsonBlob(layout, manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json', { ...manifest, config: cfg.descriptor, layers: [...manifest.layers, layer.descriptor] });
    await tagInLayout(layout, man.descriptor, `v${i}`);
    tags.push(`v${i}`);
  }
  return tags;
}

/** Regular files under usr/ of a mount, with their sizes (path TAB size per line). */
export async function regularFiles(root: string): Promise<[string, number][]> {
  const out: [string, number][] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push([p, statSync(p).size]);
    }
  };
  await walk(path.join(root, 'usr'));
  return out.filter(([, size]) => size > 0);
}
