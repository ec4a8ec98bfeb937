/**
 * Resume speed: inflate 4 MiB from each of 50 random checkpoints of a layer, with the native zlib
 * path (inflateFrom) and with the pako path it replaced (GzipInflater resume), in MB/s of output.
 * Compressed bytes are read into memory first, so only decoding is timed; the two paths alternate
 * per checkpoint so that load on the machine hits both alike. Outputs are compared.
 * Run: node --expose-gc --import tsx bench/archive/resume-throughput.ts [layer.tar.gz] [piece bytes]
 */
import fs from 'node:fs';
import { GzipInflater } from '../../src/archive/gzip-inflater.js';
import { fetchStart, inflateFrom } from '../../src/archive/random-access.js';
import { scanLayer } from '../../src/archive/scan.js';
import type { Checkpoint } from '../../src/archive/types.js';
import { benchLayers, mb } from './layers.js';

const file = process.argv[2] ?? benchLayers()[2]!;
const RESUMES = 50;
const WANT = 4 << 20;
/** Size of the pieces the compressed bytes arrive in (a fetch body gives 16-64 KiB). */
const PIECE = Number(process.argv[3] ?? 64 * 1024);

let seed = 4242;
const next = (): number => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};

const scan = await scanLayer(fs.createReadStream(file, { highWaterMark: 1 << 20 }), { compression: 'gzip' });
const usable = scan.checkpoints.filter((c) => c.out + WANT <= scan.uncompressedSize);
const picks = Array.from({ length: RESUMES }, () => usable[Math.floor(next() * usable.length)]!);
const fd = fs.openSync(file, 'r');

function compressedFor(cp: Checkpoint): Buffer {
  const start = fetchStart(cp);
  const buf = Buffer.alloc(Math.min(WANT, scan.compressedSize - start)); // never more than 1:1
  fs.readSync(fd, buf, 0, buf.length, start);
  return buf;
}

function* pieces(buf: Buffer): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += PIECE) yield buf.subarray(i, i + PIECE);
}

async function nativeResume(cp: Checkpoint, buf: Buffer): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let n = 0;
  const src = (async function* () {
    yield* pieces(buf);
  })();
  for await (const b of inflateFrom(cp, src)) {
    out.push(b);
    if ((n += b.length) >= WANT) break;
  }
  return out;
}

function pakoResume(cp: Checkpoint, buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let n = 0;
  const inflater = new GzipInflater({ resume: cp });
  for (const p of pieces(buf)) {
    inflater.write(p, (o) => {
      out.push(Buffer.from(o));
      n += o.length;
    });
    if (n >= WANT) break;
  }
  return out;
}

const collect = (globalThis as { gc?: () => void }).gc;
const cut = (bufs: Buffer[]): Buffer => Buffer.concat(bufs).subarray(0, WANT);
let nativeMs = 0;
let pakoMs = 0;
let nativeCpu = 0;
let pakoCpu = 0;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
};
let unaligned = 0;
for (const cp of picks) {
  if (cp.bits) unaligned++;
  const buf = compressedFor(cp);
  // with --expose-gc, each path starts on a clean heap instead of paying for the other's garbage
  collect?.();
  let t = performance.now();
  let c = cpuMs();
  const a = cut(await nativeResume(cp, buf));
  nativeMs += performance.now() - t;
  nativeCpu += cpuMs() - c;
  collect?.();
  t = performance.now();
  c = cpuMs();
  const b = cut(pakoResume(cp, buf));
  pakoMs += performance.now() - t;
  pakoCpu += cpuMs() - c;
  if (!a.equals(b) || a.length !== WANT) throw new Error(`outputs differ at checkpoint out=${cp.out}`);
}
const total = RESUMES * WANT;
console.log(`${file}: ${mb(scan.uncompressedSize)} MB tar, ${scan.checkpoints.length} checkpoints; ${RESUMES} resumes (${unaligned} unaligned) x 4 MiB, ${PIECE}-byte pieces`);
console.log(`| path | MB/s (wall) | MB per CPU-second (all threads) |`);
console.log(`|---|---|---|`);
console.log(`| pako (GzipInflater resume) | ${(total / 1e3 / pakoMs).toFixed(0)} | ${(total / 1e3 / pakoCpu).toFixed(0)} |`);
console.log(`| native zlib (inflateFrom) | ${(total / 1e3 / nativeMs).toFixed(0)} | ${(total / 1e3 / nativeCpu).toFixed(0)} |`);
console.log(`native/pako: ${(pakoMs / nativeMs).toFixed(2)}x wall, ${(pakoCpu / nativeCpu).toFixed(2)}x CPU`);
