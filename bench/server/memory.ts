/**
 * The node server's memory (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/memory.ts        MOUNTS=20 STREAM_GIB=1 RANDOM_S=60 READERS=32 SETTLE_S=80
 * The debian-python image (bench/images/debian-python.ts), copied into a scratch OCI layout with
 * MOUNTS-1 variants: its two layers plus one small layer of their own (different images sharing
 * the base and python layers, as images of one node often do).
 * 1. The floor, measured here: a bare `node`, and `node` with one idle worker thread.
 * 2. RSS of the server (and of its holder) idle with one mount; then per further image, up to
 *    MOUNTS, before anything is read.
 * 3. A read of every regular file under usr/ through the first mount (disk cache cold: it fills
 *    the two shared layers), then SETTLE_S seconds of watching the server go back down; the
 *    server's open layer files (one per layer, shared by the images).
 * 4. Per-request latency with MOUNTS mounted, requests to one mount and spread over all (getxattr
 *    round trips, and 4 KiB preads that reach the server), one request at a time.
 * 5. READERS random readers for RANDOM_S seconds over the regular files of every mount (disk cache
 *    warm), RSS sampled each second: start, peak, end, and the slope against bytes served.
 * 6. STREAM_GIB GiB read sequentially through one mount (the image's largest file, its page
 *    cache dropped between passes), sampled every 200 ms; and 10 s after.
 * RSS (and, under the random readers, the OS threads) from /proc/PID/status, split into anonymous and file-backed (the node binary's pages are
 * file-backed and shared by every Node process).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, writeFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountFiles } from '../../src/mount/files.js';
import { serverFiles } from '../../src/server/paths.js';
import { buildDebianPython } from '../images/debian-python.js';
import { regularFiles, variants } from './variants.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** CLIP_CLI: another build's CLI (the baseline: /work/main/dist/cli/main.js). */
const CLI = process.env.CLIP_CLI ?? path.join(REPO_ROOT, 'dist/cli/main.js');
const READERS_PY = fileURLToPath(new URL('./readers.py', import.meta.url));
const MOUNTS = Number(process.env.MOUNTS ?? 20);
const STREAM_GIB = Number(process.env.STREAM_GIB ?? 1);
const RANDOM_S = Number(process.env.RANDOM_S ?? 60);
const READERS = Number(process.env.READERS ?? 32);
const LATENCY_N = Number(process.env.LATENCY_N ?? 2000);
/** Seconds to watch the server after the warm read (the idle collection, the spans' expiry). */
const SETTLE_S = Number(process.env.SETTLE_S ?? 80);

interface Rss { rss: number; anon: number; file: number }

function rssOf(pid: number): Rss {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** The process's OS threads (the reader threads the pool adds under load among them). */
function threadsOf(pid: number): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

const mb = (r: Rss): string => `${r.rss.toFixed(1)} MB (anon ${r.anon.toFixed(1)}, file ${r.file.toFixed(1)})`;

/** RSS of a node process doing nothing, with `workers` idle worker threads. */
function floor(workers: number): Rss {
  const code = `const { Worker } = require('node:worker_threads');
for (let i = 0; i < ${workers}; i++) new Worker('require("node:worker_threads").parentPort.on("message", () => {})', { eval: true });
setTimeout(() => { const s = require('fs').readFileSync('/proc/self/status', 'utf8'); console.log(s); process.exit(0); }, 1500);`;
  const st = execFileSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

function python(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [READERS_PY, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`readers.py ${args[0]} exited ${code}`))));
  });
}

/** Open descriptors of `pid` on layer files of the cache. */
function openLayerFiles(pid: number, cache: string): number {
  const prefix = path.join(cache, 'layers') + '/';
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(prefix);
    } catch {
      return false;
    }
  }).length;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<void> {
  const image = await buildDebianPython();
  const work = await mkdtemp(path.join(REPO_ROOT, '.tmp/bench-memory-'));
  const layout = path.join(work, 'layout');
  await cp(image.layoutDir, layout, { recursive: true });
  const tags = ['latest', ...(await variants(layout, MOUNTS - 1))];
  const cache = path.join(work, 'cache');
  const mnts: string[] = [];
  const serverPid = (): number => Number(readFileSync(mountFiles(cache, mnts[0]!).pid, 'utf8').split('\n')[0]);
  const summary: Record<string, unknown> = { node: process.version };
  try {
    const bare = floor(0);
    const oneWorker = floor(1);
    console.log(`floor: bare node ${mb(bare)}; node + 1 idle worker ${mb(oneWorker)}`);
    Object.assign(summary, { bare, oneWorker });

    const mountOne = async (i: number): Promise<void> => {
      const mnt = path.join(work, `mnt${i}`);
      await mkdir(mnt);
      execFileSync(process.execPath, [CLI, 'mount', `oci:${layout}:${tags[i]}`, mnt, '--background', '--cache-dir', cache], { stdio: ['ignore', 'ignore', 'pipe'] });
      mnts.push(mnt);
    };
    await mountOne(0);
    await new Promise((r) => setTimeout(r, 3000));
    const holder = Number(readFileSync(serverFiles(cache).lock, 'utf8').split('\n')[0]);
    const idle1 = rssOf(serverPid());
    console.log(`idle, 1 mount: server ${mb(idle1)}; holder ${mb(rssOf(holder))}`);
    Object.assign(summary, { idle1, holder: rssOf(holder) });

    const perMount: Record<number, Rss> = {};
    for (let i = 1; i < MOUNTS; i++) {
      await mountOne(i);
      await new Promise((r) => setTimeout(r, 1000));
      if ([1, 4, 9, 19, MOUNTS - 1].includes(i)) {
        perMount[i + 1] = rssOf(serverPid());
        console.log(`idle, ${i + 1} images mounted: server ${mb(perMount[i + 1]!)}`);
      }
    }

    const files0 = await regularFiles(mnts[0]!);
    const list0 = path.join(work, 'files0.txt');
    writeFileSync(list0, files0.map(([p, s]) => `${p}\t${s}`).join('\n'));
    const listAll = path.join(work, 'files-all.txt');
    writeFileSync(listAll, mnts.flatMap((m) => files0.map(([p, s]) => `${path.join(m, path.relative(mnts[0]!, p))}\t${s}`)).join('\n'));
    // Warm the disk cache (the two shared layers) through the first mount, then let the server settle.
    const buf = Buffer.alloc(1 << 20);
    const w0 = Date.now();
    for (const [p] of files0) {
      const fd = openSync(p, 'r');
      while (readSync(fd, buf, 0, buf.length, null) > 0);
      closeSync(fd);
    }
    const warm = rssOf(serverPid());
    const warmSamples: string[] = [];
    for (let t = 10; t <= SETTLE_S; t += 10) {
      await new Promise((r) => setTimeout(r, 10_000));
      warmSamples.push(`${t}:${rssOf(serverPid()).rss.toFixed(0)}`);
    }
    const settled = rssOf(serverPid());
    console.log(`warm read of ${files0.length} files (${(files0.reduce((n, [, s]) => n + s, 0) / 1e6).toFixed(0)} MB) in ${((Date.now() - w0) / 1000).toFixed(0)} s: server right after ${mb(warm)}; settled ${mb(settled)}; open layer files ${openLayerFiles(serverPid(), cache)}`);
    console.log(`  after the warm read (s:MB): ${warmSamples.join(' ')}`);
    Object.assign(summary, { perMount, openLayerFiles: openLayerFiles(serverPid(), cache), warm, settled });

    const lat1 = JSON.parse(await python(['latency', String(LATENCY_N), list0])) as unknown;
    console.log(`latency, requests to 1 of ${MOUNTS} mounts (µs): ${JSON.stringify(lat1)}`);
    const latN = JSON.parse(await python(['latency', String(LATENCY_N), listAll])) as unknown;
    console.log(`latency, requests spread over ${MOUNTS} mounts (µs): ${JSON.stringify(latN)}`);
    Object.assign(summary, { latency1: lat1, latencyN: latN });

    // Random readers over every mount, the disk cache warm.
    const before = rssOf(serverPid());
    const samples: { t: number; rss: number }[] = [];
    const t0 = Date.now();
    let threads = 0;
    const sampler = setInterval(() => {
      const pid = serverPid();
      samples.push({ t: (Date.now() - t0) / 1000, rss: rssOf(pid).rss });
      threads = Math.max(threads, threadsOf(pid));
    }, 1000);
    const rnd = JSON.parse(await python(['random', String(RANDOM_S), String(READERS), listAll])) as { bytes: number; reads: number; errors: number; seconds: number };
    clearInterval(sampler);
    const rndAfter = rssOf(serverPid());
    await new Promise((r) => setTimeout(r, 10_000));
    const rndLater = rssOf(serverPid());
    const peak = Math.max(...samples.map((s) => s.rss));
    // RSS against bytes served over the second half (bytes assumed served evenly in time).
    const half = samples.filter((s) => s.t >= rnd.seconds / 2);
    const perGiB = slope(half.map((s) => (s.t / rnd.seconds) * (rnd.bytes / 2 ** 30)), half.map((s) => s.rss));
    console.log(`${READERS} random readers for ${rnd.seconds.toFixed(0)} s over ${MOUNTS} mounts: ${rnd.reads} reads, ${(rnd.bytes / 2 ** 30).toFixed(2)} GiB, ${rnd.errors} errors`);
    console.log(`  before ${mb(before)}; peak ${peak.toFixed(1)} MB; right after ${mb(rndAfter)}; 10 s later ${mb(rndLater)}; second-half slope ${perGiB.toFixed(2)} MB per GiB served`);
    console.log(`  samples (s:MB): ${samples.map((s) => `${s.t.toFixed(0)}:${s.rss.toFixed(0)}`).join(' ')}`);
    console.log(`  the server's OS threads: most ${threads} during it (${threadsOf(serverPid())} 10 s after)`);
    Object.assign(summary, { random: { ...rnd, before, peak, after: rndAfter, later: rndLater, slopeMbPerGiB: perGiB } });

    // Streaming through the first mount.
    const [file, size] = files0.reduce((a, b) => (b[1] > a[1] ? b : a));
    const passes = Math.ceil((STREAM_GIB * 2 ** 30) / size);
    const streamBefore = rssOf(serverPid());
    let streamPeak = streamBefore;
    const streamSampler = setInterval(() => {
      const r = rssOf(serverPid());
      if (r.rss > streamPeak.rss) streamPeak = r;
    }, 200);
    const s0 = Date.now();
    for (let p = 0; p < passes; p++) {
      execFileSync('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)', file]);
      const fd = openSync(file, 'r');
      let off = 0;
      for (let n = readSync(fd, buf, 0, buf.length, off); n > 0; n = readSync(fd, buf, 0, buf.length, off)) off += n;
      closeSync(fd);
    }
    clearInterval(streamSampler);
    const after = rssOf(serverPid());
    await new Promise((r) => setTimeout(r, 10_000));
    const later = rssOf(serverPid());
    console.log(`streamed ${((passes * size) / 2 ** 30).toFixed(2)} GiB (${path.relative(mnts[0]!, file)}, ${(size / 1e6).toFixed(1)} MB × ${passes}) in ${((Date.now() - s0) / 1000).toFixed(1)} s`);
    console.log(`  before ${mb(streamBefore)}; peak ${mb(streamPeak)}; right after ${mb(after)}; 10 s later ${mb(later)}`);
    Object.assign(summary, { stream: { gib: (passes * size) / 2 ** 30, seconds: (Date.now() - s0) / 1000, before: streamBefore, peak: streamPeak, after, later } });
    console.log(`summary ${JSON.stringify(summary)}`);
  } finally {
    for (const m of mnts) execFileSync(process.execPath, [CLI, 'unmount', m, '--cache-dir', cache], { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
