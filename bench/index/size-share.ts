/**
 * Index size as a share of the image's uncompressed size, for a realistic gzip layer, at several
 * checkpoint spans. The layer is made once from this machine's own files (cached under .tmp/):
 *   tar -cf - usr/bin usr/lib/python3.11 usr/include etc | pigz -6
 * Run: node --import tsx bench/index/size-share.ts [layer.tar.gz]
 */
import { execSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanLayer } from '../../src/archive/scan.js';
import * as F from '../../src/index/format.js';
import { buildIndex } from '../../src/index/writer.js';
import { formatSize } from '../../src/util/size.js';

const here = dirname(fileURLToPath(import.meta.url));
const cache = join(here, '../../.tmp/bench-index');
const layer = process.argv[2] ?? join(cache, 'realistic.tar.gz');
if (!existsSync(layer)) {
  mkdirSync(cache, { recursive: true });
  execSync(`tar --numeric-owner -cf - usr/bin usr/lib/python3.11 usr/include etc 2>/dev/null | pigz -6 > '${layer}'`, { cwd: '/', shell: '/bin/bash' });
}

function sectionSizes(bytes: Buffer): Map<number, number> {
  const sizes = new Map<number, number>();
  for (let i = 0; i < bytes.readUInt32LE(12); i++) {
    const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
    sizes.set(bytes.readUInt32LE(e), bytes.readDoubleLE(e + 16));
  }
  return sizes;
}

const pct = (n: number, of: number): string => `${((100 * n) / of).toFixed(3)} %`;
for (const spanMiB of [0.5, 1, 2, 4]) {
  const t0 = Date.now();
  const scan = await scanLayer(createReadStream(layer), { compression: 'gzip', span: spanMiB * 1024 * 1024 });
  const scanMs = Date.now() - t0;
  const meta = {
    reference: 'bench.local/realistic:1', location: 'bench.local/realistic', manifestDigest: `sha256:${'0'.repeat(64)}`,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json', platform: { os: 'linux', architecture: 'amd64' },
    config: Buffer.from('{"architecture":"amd64","os":"linux"}'),
    layers: [{
      digest: scan.digest, diffId: scan.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      compression: scan.compression, compressedSize: scan.compressedSize, uncompressedSize: scan.uncompressedSize,
    }],
  };
  const bytes = buildIndex(meta, [scan]);
  const s = sectionSizes(bytes);
  const u = scan.uncompressedSize;
  const tree = (s.get(F.Section.Entries) ?? 0) + (s.get(F.Section.Inodes) ?? 0) + (s.get(F.Section.Strings) ?? 0) + (s.get(F.Section.Xattrs) ?? 0);
  const cps = (s.get(F.Section.Checkpoints) ?? 0) + (s.get(F.Section.Windows) ?? 0);
  console.log(
    `span ${spanMiB} MiB: layer ${formatSize(scan.compressedSize)} gz / ${formatSize(u)} tar, ${scan.entries.length} entries, ` +
      `${scan.checkpoints.length} checkpoints; index ${formatSize(bytes.length)} = ${pct(bytes.length, u)} of uncompressed ` +
      `(tree ${pct(tree, u)}, checkpoints+windows ${pct(cps, u)}, chunk digests ${pct(s.get(F.Section.Chunks) ?? 0, u)}); scan ${scanMs} ms`,
  );
}
