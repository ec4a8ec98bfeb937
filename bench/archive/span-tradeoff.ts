/**
 * Checkpoint span against index size and read cost: for spans of 1/2/4/8 MiB, how many
 * checkpoints a layer gets, what they cost to store (windows deflated, plus 20 bytes of offsets)
 * as a share of the uncompressed layer, and how many compressed bytes a 4 KiB read at a random
 * offset consumes (measured by decoding, counting the bytes pulled from the source).
 * Run: node --import tsx bench/archive/span-tradeoff.ts [layer.tar.gz]
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { readUncompressedRange } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import { benchLayers, mb } from './layers.js';

const file = process.argv[2] ?? benchLayers()[2]!;
const READS = 200;
const READ = 4096;

// a fixed pseudo-random sequence, so every span is measured on the same offsets
let seed = 12345;
const next = (): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};

const rows: string[][] = [];
let offsets: number[] = [];
for (const spanMiB of [1, 2, 4, 8]) {
  for (const big of [true, false]) {
    const scan = await scanLayer(fs.createReadStream(file, { highWaterMark: 1 << 20 }), {
      compression: 'gzip',
      span: spanMiB << 20,
      bigFileThreshold: big ? 512 * 1024 : Number.MAX_SAFE_INTEGER,
    });
    if (offsets.length === 0) offsets = Array.from({ length: READS }, () => Math.floor(next() * (scan.uncompressedSize - READ)));
    const stored = scan.checkpoints.reduce((sum, cp) => sum + 20 + (cp.window.length ? zlib.deflateRawSync(cp.window).length : 0), 0);
    const fd = fs.openSync(file, 'r');
    let pulled = 0;
    for (const offset of offsets) {
      await readUncompressedRange(scan, offset, READ, async (start, end) => (async function* () {
        for (let p = start; p < end; p += 16384) {
          const buf = Buffer.alloc(Math.min(16384, end - p));
          fs.readSync(fd, buf, 0, buf.length, p);
          pulled += buf.length;
          yield buf;
        }
      })());
    }
    fs.closeSync(fd);
    rows.push([
      `${spanMiB} MiB${big ? '' : ' (no big-file checkpoints)'}`,
      String(scan.checkpoints.length),
      `${mb(stored)} MB`,
      `${((stored / scan.uncompressedSize) * 100).toFixed(3)} %`,
      `${(pulled / READS / 1024).toFixed(0)} KiB`,
    ]);
    if (rows.length === 1) console.log(`layer ${path.basename(file)}: ${mb(scan.compressedSize)} MB compressed, ${mb(scan.uncompressedSize)} MB tar, ${scan.entries.length} entries\n`);
  }
}

const head = ['span', 'checkpoints', 'stored (windows deflated)', 'share of tar', `avg compressed bytes per ${READ / 1024} KiB read`];
console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
