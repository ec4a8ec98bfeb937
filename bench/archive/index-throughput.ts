/**
 * Index throughput: scanLayer (inflate + tar walk + checkpoints + sha256 of blob, tar and chunks)
 * against `gzip -dc` of the same layers to /dev/null, measured in the same run.
 * Run: node --import tsx bench/archive/index-throughput.ts
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanLayer } from '../../src/archive/scan.js';
import { closeScanPool, scanLayerInWorker } from '../../src/archive/scan-pool.js';
import { benchLayers, mb } from './layers.js';

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const layers = benchLayers();
const compressed = layers.map((f) => fs.statSync(f).size);
const rows: string[][] = [];

// one-core reference
const gzipTimes: number[] = [];
for (const f of layers) {
  const t = process.hrtime.bigint();
  execFileSync('sh', ['-c', `gzip -dc '${f}' > /dev/null`]);
  gzipTimes.push(seconds(t));
}
const gzipTotal = gzipTimes.reduce((a, b) => a + b, 0);
// control: the same gzip runs side by side show how many cores this machine really gives us now
const tg = process.hrtime.bigint();
execFileSync('sh', ['-c', `${layers.map((f) => `gzip -dc '${f}' > /dev/null &`).join(' ')} wait`]);
const gzipParallel = seconds(tg);

// single layer at a time, in this thread
const sizes: number[] = [];
const singleTimes: number[] = [];
for (const f of layers) {
  const t = process.hrtime.bigint();
  const scan = await scanLayer(fs.createReadStream(f, { highWaterMark: 1 << 20 }), { compression: 'gzip' });
  singleTimes.push(seconds(t));
  sizes.push(scan.uncompressedSize);
}
const total = sizes.reduce((a, b) => a + b, 0);

// all layers at once through the worker pool
const t = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
await Promise.all(layers.map((f) => scanLayerInWorker(fs.createReadStream(f, { highWaterMark: 1 << 20 }), { compression: 'gzip' })));
const parallel = seconds(t);
const cpu = process.cpuUsage(cpu0);
const coresUsed = (cpu.user + cpu.system) / 1e6 / parallel;
await closeScanPool();

for (let i = 0; i < layers.length; i++) {
  rows.push([path.basename(layers[i]!), mb(compressed[i]!), mb(sizes[i]!), (sizes[i]! / 1e6 / gzipTimes[i]!).toFixed(0), (sizes[i]! / 1e6 / singleTimes[i]!).toFixed(0), (gzipTimes[i]! / singleTimes[i]!).toFixed(2)]);
}
rows.push(['all, one at a time', mb(compressed.reduce((a, b) => a + b, 0)), mb(total), (total / 1e6 / gzipTotal).toFixed(0), (total / 1e6 / singleTimes.reduce((a, b) => a + b, 0)).toFixed(0), (gzipTotal / singleTimes.reduce((a, b) => a + b, 0)).toFixed(2)]);
rows.push([`all, parallel (${os.availableParallelism()} workers)`, '', mb(total), (total / 1e6 / gzipTotal).toFixed(0), (total / 1e6 / parallel).toFixed(0), (gzipTotal / parallel).toFixed(2)]);

rows.push(['control: gzip -dc of all layers side by side', '', mb(total), (total / 1e6 / gzipParallel).toFixed(0), '', '']);

const head = ['layer', 'compressed MB', 'tar MB', 'gzip -dc MB/s', 'clip scan MB/s', 'ratio (clip/gzip)'];
console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nsingle-layer ratio ${(gzipTotal / singleTimes.reduce((a, b) => a + b, 0)).toFixed(2)}x, parallel ratio ${(gzipTotal / parallel).toFixed(2)}x (throughput in MB of tar per second)`);
console.log(`cores actually available: gzip side by side ran ${(gzipTotal / gzipParallel).toFixed(2)}x faster than one after another; the clip workers used ${coresUsed.toFixed(2)} cores`);
console.log(`parallel clip against parallel gzip: ${(gzipParallel / parallel).toFixed(2)}x`);
