/**
 * What a FUSE reader thread's start costs a mount (issue 12: a cold start starts one or two, on two
 * busy cores), run by hand after `npm run build`:
 *   node --import tsx bench/mount/thread-start.ts        RUNS=9 BASE=DIR[,DIR2]
 * Each round, each build in turn (this one, then BASE's built checkouts) runs one fresh process
 * that loads the debian-python index as a mount does (ImageIndex.open, into shared memory), then
 * starts a worker thread that loads the build's answering module (dist/fs/index-thread.js) and
 * makes the thread's filesystem over the shared bytes, as a reader thread does on its first
 * connection. Prints medians (min–max) per build of the thread's own CPU (/proc/thread-self/schedstat:
 * node's start of the thread, the modules, the index) and of the wall time from `new Worker` to its
 * answer; writes nothing. The index: bench/images/debian-python.ts debianPythonIndexFile (or INDEX=FILE).
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { median } from '../coldstart/coldstart.js';
import { debianPythonIndexFile } from '../images/debian-python.js';

const execFileP = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 9);
const BUILDS = [
  { name: 'this', dist: path.join(REPO_ROOT, 'dist') },
  ...(process.env.BASE ?? '').split(',').filter(Boolean).map((dir) => ({ name: path.basename(dir), dist: path.join(path.resolve(dir), 'dist') })),
];

/** One process: the index loaded, then one thread started over it; prints one JSON line. */
const CHILD = `
const [dist, indexFile] = process.argv.slice(1);
const { Worker } = await import('node:worker_threads');
const { ImageIndex } = await import(dist + '/index/reader.js');
const bytes = (await ImageIndex.open(indexFile)).buffer;
const sab = new SharedArrayBuffer(bytes.length);
bytes.copy(Buffer.from(sab));
const THREAD = \`
import { workerData, parentPort } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
const m = await import(workerData.module);
const fs = m.createSyncFilesystem({ index: workerData.sab, file: workerData.file, timeoutSeconds: 1 });
if (!fs.lookup) throw new Error('no lookup');
parentPort.postMessage(Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6);
\`;
const t0 = performance.now();
const w = new Worker(THREAD, { eval: true, workerData: { module: dist + '/fs/index-thread.js', sab, file: indexFile } });
const cpu = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
const wall = performance.now() - t0;
await w.terminate();
console.log(JSON.stringify({ cpu, wall }));
`;

async function main(): Promise<void> {
  const file = await debianPythonIndexFile();
  console.log(`index ${file}; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const got = new Map(BUILDS.map((b) => [b.name, { cpu: [] as number[], wall: [] as number[] }]));
  for (let r = 0; r < RUNS; r++) {
    for (const b of BUILDS) {
      const { stdout } = await execFileP('node', ['--input-type=module', '-e', CHILD, b.dist, file]);
      const one = JSON.parse(stdout) as { cpu: number; wall: number };
      got.get(b.name)!.cpu.push(one.cpu);
      got.get(b.name)!.wall.push(one.wall);
    }
  }
  const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
  console.log('\n| build | thread CPU ms | new Worker → answer, ms |\n|---|---|---|');
  for (const b of BUILDS) console.log(`| ${b.name} | ${fmt(got.get(b.name)!.cpu)} | ${fmt(got.get(b.name)!.wall)} |`);
  console.log(`\n${RUNS} rounds, builds alternating; load after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
