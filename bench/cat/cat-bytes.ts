/**
 * Bytes fetched from the registry by `clip cat` of a small file in the middle of a 100 MB+ layer,
 * against the layer's compressed size. Run by hand:
 *
 *   node --import tsx bench/cat/cat-bytes.ts            (SPANS_MIB=1,2,4,8 SIZE_MB=60 per side)
 *
 * Builds a one-layer image (a seeded file, the small file, another seeded file; half-compressible
 * content like the fixtures'), pushes it to a real docker-registry behind the counting proxy,
 * indexes it with each span, then runs `clip cat` of the small file with a cold cache and sums the
 * compressed bytes the registry was asked for. Writes bench/cat/RESULTS.md.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/archive/scan.js';
import { ImageIndex } from '../../src/index/reader.js';
import { seededContent, writeImage } from '../../src/oci/build/index.js';
import { pushLayout } from '../../src/oci/push.js';
import { formatSize } from '../../src/util/size.js';
import { clip } from '../../test/cli/program.js';
import { startFaultProxy } from '../../test/support/fault-proxy.js';
import { startRegistry } from '../../test/support/registry.js';

const MiB = 1024 * 1024;
const SPANS = (process.env.SPANS_MIB ?? '1,2,4,8').split(',').map(Number);
const SIDE = Number(process.env.SIZE_MB ?? 60) * MiB + 4321;
const SMALL = 'middle of the layer\n'.repeat(200); // 4 KiB
const work = path.resolve('.tmp/bench-cat');
const layoutDir = path.join(work, `layout-${SIDE}`);

async function ensureImage(): Promise<void> {
  if (await stat(path.join(layoutDir, 'index.json')).then(() => true, () => false)) return;
  await rm(layoutDir, { recursive: true, force: true });
  const m = { mtime: { sec: 1_700_000_000 } };
  await writeImage(layoutDir, {
    tag: 'latest',
    layers: [{
      entries: [
        { type: 'dir', path: 'data', ...m },
        { type: 'file', path: 'data/a.bin', content: seededContent('bench/a', SIDE, { compressible: 0.5 }), ...m },
        { type: 'file', path: 'data/middle.txt', content: SMALL, ...m },
        { type: 'file', path: 'data/b.bin', content: seededContent('bench/b', SIDE, { compressible: 0.5 }), ...m },
      ],
    }],
  });
}

function requested(range: string | undefined, size: number): number {
  const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
  if (!m) return size;
  return (m[2] ? Number(m[2]) + 1 : size) - Number(m[1]);
}

await mkdir(work, { recursive: true });
await ensureImage();
const registry = await startRegistry();
const proxy = await startFaultProxy(registry.host);
const tmp = await import('node:fs/promises').then((fs) => fs.mkdtemp(path.join(os.tmpdir(), 'clip-bench-cat-')));
const rows: string[] = [];
try {
  const ref = `${proxy.host}/bench/cat:latest`;
  await pushLayout(layoutDir, 'latest', `${registry.host}/bench/cat:latest`);
  for (const spanMiB of SPANS) {
    const indexFile = path.join(tmp, `span-${spanMiB}.clip`);
    await clip('index', ref, '-o', indexFile, '--span', `${spanMiB}MiB`, '--cache-dir', path.join(tmp, 'cache'), '--no-progress');
    const index = await ImageIndex.open(indexFile);
    const layer = index.layers[0]!;
    const loc = index.dataLocation(index.resolvePath('/data/middle.txt'))!;
    proxy.requests.length = 0;
    const started = process.hrtime.bigint();
    const { stdout } = await clip('cat', indexFile, '/data/middle.txt', '--cache-dir', path.join(tmp, `cold-${spanMiB}`));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (stdout.toString() !== SMALL) throw new Error('clip cat returned the wrong bytes');
    const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${layer.digest}`));
    const fetched = gets.reduce((n, r) => n + requested(r.range, layer.compressedSize), 0);
    const indexBytes = (await stat(indexFile)).size;
    rows.push(`| ${spanMiB} MiB | ${formatSize(layer.compressedSize)} | ${formatSize(loc.offset)} | ${gets.length} | ${formatSize(fetched)} | ${(100 * fetched / layer.compressedSize).toFixed(2)} % | ${(layer.compressedSize / fetched).toFixed(0)}× | ${formatSize(indexBytes)} | ${ms.toFixed(0)} ms |`);
    console.log(rows[rows.length - 1]);
  }
} finally {
  await proxy.stop();
  await registry.stop();
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
}

const report = `# clip cat: bytes fetched for a small file in the middle of a 100 MB+ layer

Command (run by hand, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores, Node ${process.version}):

    node --import tsx bench/cat/cat-bytes.ts

One gzip layer: a ${formatSize(SIDE)} half-compressible file, a 4 KiB text file, another ${formatSize(SIDE)} file
(${formatSize(2 * SIDE)} uncompressed). Pushed to docker-registry (distribution 2.8) on loopback; \`clip index\`
with each span, then \`clip cat INDEX /data/middle.txt\` with a cold cache directory, through a proxy that
records every request's Range. "Fetched" is the compressed bytes the registry was asked for.

| span | layer (stored) | file offset | blob GETs | fetched | share of layer | layer / fetched | index size | cat time |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

The read path verifies whole ${formatSize(DEFAULT_CHUNK_SIZE)} chunks (per-chunk sha256 from the index), so a read
fetches from the last checkpoint at or before the start of the file's chunk to the first checkpoint at or
after the chunk's end: at most one span plus one chunk of output, compressed, plus one byte for an
unaligned checkpoint. The inflate window (32 KiB) travels in the index, not over the network.
`;
await writeFile(path.resolve('bench/cat/RESULTS.md'), report);
console.log(report);
