/**
 * `clip index` of an image whose base layer was scanned before, against indexing it from scratch
 * (run by hand, as root the first time, when the debian-python image is built):
 *   node --import tsx bench/index/layer-reuse.ts          RUNS=5
 * The debian-python image (bench/images/debian-python.ts: debootstrap base + apt python3). Each
 * round, alternating: (a) from scratch, an empty cache, every layer read; (b) an empty cache
 * holding only the base layer's stored scan (as a node that indexed another image on that base),
 * so only the python layer is read. Medians, spread, and the ratio, as JSON lines.
 */
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { LayoutSource } from '../../src/oci/index.js';
import { indexImage } from '../../src/storage/indexer.js';
import { scanKey } from '../../src/storage/scan-cache.js';
import { buildDebianPython } from '../images/debian-python.js';

const RUNS = Number(process.env.RUNS ?? 5);
const work = path.resolve('.tmp/bench-layer-reuse');

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const image = await buildDebianPython();
await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const seed = await mkdtemp(path.join(work, 'seed-'));
const source = (): LayoutSource => new LayoutSource(image.layoutDir, image.tag);
// One full index, to have the base layer's scan stored.
const first = await indexImage(source(), { cacheDir: seed });
const baseKey = scanKey(first.image.layers[0]!, {});
const baseScan = (await readdir(path.join(seed, 'scans'))).find((n) => n.startsWith(baseKey));
if (!baseScan) throw new Error('the base layer scan was not stored');

const times = { scratch: [] as number[], reused: [] as number[] };
for (let r = 0; r < RUNS; r++) {
  for (const arm of r % 2 ? (['reused', 'scratch'] as const) : (['scratch', 'reused'] as const)) {
    const dir = await mkdtemp(path.join(work, `${arm}-`));
    if (arm === 'reused') await cp(path.join(seed, 'scans', baseScan), path.join(dir, 'scans', baseScan), { recursive: true });
    const t = performance.now();
    const made = await indexImage(source(), { cacheDir: dir, ...(arm === 'scratch' ? { reuseScans: false } : {}) });
    times[arm].push((performance.now() - t) / 1000);
    if (!made.bytes.equals(first.bytes)) throw new Error(`${arm}: the index differs from the first one`);
    await rm(dir, { recursive: true, force: true });
  }
}
await closeScanPool();
const row = (xs: number[]): string => `${median(xs).toFixed(2)} s (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
console.log(JSON.stringify({
  bench: 'index-layer-reuse', image: `${path.relative(process.cwd(), image.layoutDir)}:${image.tag}`, runs: RUNS,
  layers: image.layers.map((l) => ({ compressed: l.compressedSize, uncompressed: l.uncompressedSize })),
  scratch: row(times.scratch), baseReused: row(times.reused), ratio: +(median(times.scratch) / median(times.reused)).toFixed(2),
  perRound: times.scratch.map((s, i) => +(s / times.reused[i]!).toFixed(2)), load: loadavg().map((x) => +x.toFixed(2)),
}));
