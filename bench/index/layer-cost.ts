/**
 * What one layer costs to index, in memory and time: a gzip bomb (GiB of zeros in a few MB) and a
 * layer of many empty files, streamed from a generator through the scan worker and the index
 * builder as `clip index` does. Peak RSS (main thread and scan worker: one process) is sampled
 * every 20 ms; the growth over the baseline is reported per GiB inflated or per entry.
 *   node --expose-gc --import tsx bench/index/layer-cost.ts bomb 2      # 2 GiB of zeros
 *   node --expose-gc --import tsx bench/index/layer-cost.ts files 200000
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { closeScanPool, scanLayerInWorker } from '../../src/archive/scan-pool.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { END, header } from '../../test/archive/tar-builder.js';

const GIB = 2 ** 30;
const [mode = 'bomb', arg = '2'] = process.argv.slice(2);
const n = Number(arg);

function* bombTar(gib: number): Generator<Buffer> {
  const zeros = Buffer.alloc(1 << 20);
  for (let f = 0; f < gib; f++) {
    yield header({ name: `zeros-${f}`, size: GIB });
    for (let i = 0; i < 1024; i++) yield zeros;
  }
  yield END;
}

function* filesTar(count: number): Generator<Buffer> {
  const batch: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 1000 === 0) batch.push(header({ name: `d${Math.floor(i / 1000)}/`, type: '5', mode: 0o755 }));
    batch.push(header({ name: `d${Math.floor(i / 1000)}/file-${i}`, size: 0 }));
    if (batch.length >= 256) yield Buffer.concat(batch.splice(0));
  }
  yield Buffer.concat([...batch, END]);
}

(globalThis as { gc?: () => void }).gc?.();
const base = process.memoryUsage().rss;
let peak = base;
const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
const t0 = Date.now();
const gz = Readable.from(mode === 'bomb' ? bombTar(n) : filesTar(n)).pipe(createGzip({ level: 1 }));
const blobHash = createHash('sha256');
let compressed = 0;
gz.on('data', (c: Buffer) => { blobHash.update(c); compressed += c.length; });
const scan = await scanLayerInWorker(gz, { compression: 'gzip', name: `bench-${mode}`, packWindows: true }); // as indexImage does
const scanned = Date.now();
const scanPeak = Math.max(peak, process.memoryUsage().rss);
const entryCount = scan.entries.length;
const builder = new IndexBuilder({
  reference: 'bench', location: 'bench', manifestDigest: `sha256:${'0'.repeat(64)}`, manifestMediaType: 'x',
  platform: { os: 'linux', architecture: 'amd64' }, config: Buffer.from('{}'),
});
builder.addLayer({
  digest: scan.digest, diffId: scan.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', compression: 'gzip',
  compressedSize: scan.compressedSize, uncompressedSize: scan.uncompressedSize,
}, scan);
const entries = entryCount;
scan.entries.length = 0; // as indexImage: a merged layer's entries are dropped before the build
const bytes = builder.build();
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss);
await closeScanPool();
const grown = peak - base;
const fmt = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
console.log(JSON.stringify({
  mode, n, blob: fmt(compressed), inflated: fmt(scan.uncompressedSize), entries, checkpoints: scan.checkpoints.length,
  index: fmt(bytes.length), scanSec: (scanned - t0) / 1000, totalSec: (Date.now() - t0) / 1000,
  peakRssGrowth: fmt(grown), scanPeakRssGrowth: fmt(scanPeak - base),
  perUnit: mode === 'bomb' ? `${fmt(grown / (scan.uncompressedSize / GIB))} per GiB inflated` : `${(grown / entries).toFixed(0)} B per entry`,
}));
