/**
 * What the idle node server's RSS is made of (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/idle-parts.ts IMAGE CACHE_DIR      (IMAGE indexed in CACHE_DIR)
 * 1. Per module: a fresh node per step, importing one more part of the server's code (built, from
 *    dist/), then gc: RssAnon / RssFile / V8 heap, medians of R (3) runs.
 * 2. The server's state for one mount without FUSE, so without a reader thread: the image opened as
 *    the server opens one handed over by `clip mount --background`, its storage, filesystem and
 *    metrics; then the same plus one idle worker thread.
 * The server's flags as the holder gives them (1 MB semi-spaces, the heap growing factor).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as OpenImage from '../../src/mount/open-image.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = path.join(ROOT, 'dist');
const R = Number(process.env.R ?? 3);
const FLAGS = ['--max-semi-space-size=1', '--expose-gc', '--heap-growing-percent=25', '--input-type=module', '-e'];
interface Figures { anon: number; file: number; heap: number }

const MEASURE = `
await new Promise((r) => setTimeout(r, 1000)); gc(); await new Promise((r) => setTimeout(r, 1000)); gc();
const { createRequire } = await import('node:module');
createRequire(import.meta.url)('koffi').load('libc.so.6').func('int malloc_trim(size_t)')(0);
const st = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
const kb = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(st)[1]) / 1024;
console.log(JSON.stringify({ anon: kb('RssAnon'), file: kb('RssFile'), heap: process.memoryUsage().heapUsed / 2 ** 20 }));
process.exit(0);`;

function median(code: string): Figures {
  const runs: Figures[] = [];
  for (let i = 0; i < R; i++) runs.push(JSON.parse(execFileSync(process.execPath, [...FLAGS, code + MEASURE], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop()!) as Figures);
  const med = (k: keyof Figures): number => runs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(R / 2)]!;
  return { anon: med('anon'), file: med('file'), heap: med('heap') };
}

const show = (label: string, f: Figures, prev?: Figures): void =>
  console.log(`${label.padEnd(34)} anon ${f.anon.toFixed(1)} file ${f.file.toFixed(1)} heap ${f.heap.toFixed(1)}${prev ? `  (+anon ${(f.anon - prev.anon).toFixed(1)}, +file ${(f.file - prev.file).toFixed(1)})` : ''}`);

const imp = (m: string): string => `await import(${JSON.stringify(m.startsWith('.') || m.includes('/') ? path.join(DIST, m) : m)});`;
const steps: [string, string[]][] = [
  ['bare node', []],
  ['+ util/log (pino)', ['util/log.js']],
  ['+ prom-client', ['prom-client']],
  ['+ fuse', ['fuse/index.js']],
  ['+ storage', ['storage/storage.js']],
  ['+ mount/open-image, fs/image-fs', ['mount/open-image.js', 'fs/image-fs.js']],
  ['+ profile, mount/serve', ['profile/mount-profile.js', 'mount/serve.js']],
  ['+ server (the whole static graph)', ['server/node-server.js', 'server/idle-memory.js']],
];
let prev: Figures | undefined;
let code = '';
for (const [label, mods] of steps) {
  code += mods.map(imp).join('');
  const f = median(code);
  show(label, f, prev);
  prev = f;
}

const [image, cacheDir] = process.argv.slice(2);
if (image && cacheDir) {
  const { openImageArg, handoffOf } = await import(path.join(DIST, 'mount/open-image.js')) as typeof OpenImage;
  const img = await openImageArg(image, { cacheDir });
  const resolved = handoffOf(img);
  await img.close();
  if (!resolved) throw new Error(`${image}: not an image the server would be handed (give oci:/ABS/DIR[:tag] or a registry name)`);
  const mount = `${code}
const { createLogger } = await import(${JSON.stringify(path.join(DIST, 'util/log.js'))});
const log = createLogger('warn');
const { openImageArg, openImageStorage } = await import(${JSON.stringify(path.join(DIST, 'mount/open-image.js'))});
const { ImageFilesystem } = await import(${JSON.stringify(path.join(DIST, 'fs/image-fs.js'))});
const { registerProcessMetrics } = await import(${JSON.stringify(path.join(DIST, 'mount/process-metrics.js'))});
const img = await openImageArg(${JSON.stringify(image)}, { cacheDir: ${JSON.stringify(cacheDir)}, resolved: ${JSON.stringify(resolved)}, logger: log });
const storage = await openImageStorage(img, { logger: log });
const fs = new ImageFilesystem(img.index, storage, { logger: log });
registerProcessMetrics(storage.metrics.registry, 0, { image: img, fs });
globalThis.keep = { img, storage, fs };`;
  const noThread = median(mount);
  show('+ one mount, no FUSE, no thread', noThread, prev);
  const withWorker = median(`${mount}
const { Worker } = await import('node:worker_threads');
new Worker(new URL('data:text/javascript,import { parentPort } from "node:worker_threads"; parentPort.on("message", () => {});'));`);
  show('+ one idle worker thread', withWorker, noThread);
}
