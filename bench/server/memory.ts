/**
 * The node server's memory (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/memory.ts        MOUNTS=20 STREAM_GIB=1
 * The debian-python image (bench/images/debian-python.ts) from its local OCI layout, index cached.
 * 1. RSS of the server (and of its holder) idle with one mount, then after each further mount up to
 *    MOUNTS (the same image on MOUNTS mountpoints: each mount opens its own index and storage, so
 *    this is the per-mount cost; the disk cache files are shared).
 * 2. With one mount: RSS while STREAM_GIB GiB are read sequentially through it (the image's largest
 *    file again and again, its page cache dropped between passes, the disk cache warm after the
 *    first), sampled every 200 ms; and 10 s after.
 * RSS from /proc/PID/status, split into anonymous and file-backed (the node binary's pages are
 * file-backed and shared by every Node process).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountFiles } from '../../src/mount/files.js';
import { serverFiles } from '../../src/server/paths.js';
import { buildDebianPython } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const MOUNTS = Number(process.env.MOUNTS ?? 20);
const STREAM_GIB = Number(process.env.STREAM_GIB ?? 1);

interface Rss { rss: number; anon: number; file: number }

function rssOf(pid: number): Rss {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

const mb = (r: Rss): string => `${r.rss.toFixed(1)} MB (anon ${r.anon.toFixed(1)}, file ${r.file.toFixed(1)})`;

async function largestFile(root: string): Promise<string> {
  let best = { p: '', size: 0 };
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && depth < 6) await walk(p, depth + 1);
      else if (e.isFile()) {
        const size = statSync(p).size;
        if (size > best.size) best = { p, size };
      }
    }
  };
  await walk(path.join(root, 'usr'), 0);
  return best.p;
}

async function main(): Promise<void> {
  const image = await buildDebianPython();
  const ref = `oci:${image.layoutDir}:latest`;
  const work = await mkdtemp(path.join(REPO_ROOT, '.tmp/bench-memory-'));
  const cache = path.join(work, 'cache');
  const mnts: string[] = [];
  const serverPid = (): number => Number(readFileSync(mountFiles(cache, mnts[0]!).pid, 'utf8').split('\n')[0]);
  try {
    for (let i = 0; i < MOUNTS; i++) {
      const mnt = path.join(work, `mnt${i}`);
      await mkdir(mnt);
      execFileSync(process.execPath, [CLI, 'mount', ref, mnt, '--background', '--cache-dir', cache], { stdio: 'ignore' });
      mnts.push(mnt);
      await new Promise((r) => setTimeout(r, 1000));
      if (i === 0) {
        const holder = Number(readFileSync(serverFiles(cache).lock, 'utf8').split('\n')[0]);
        console.log(`idle, 1 mount: server ${mb(rssOf(serverPid()))}; holder ${mb(rssOf(holder))}`);
      } else if ([1, 4, 9, 19].includes(i)) {
        console.log(`idle, ${i + 1} mounts: server ${mb(rssOf(serverPid()))}`);
      }
    }
    const base = rssOf(serverPid());
    // Streaming through the first mount.
    const file = await largestFile(mnts[0]!);
    const size = statSync(file).size;
    const passes = Math.ceil((STREAM_GIB * 2 ** 30) / size);
    let peak = base;
    const sampler = setInterval(() => {
      const r = rssOf(serverPid());
      if (r.rss > peak.rss) peak = r;
    }, 200);
    const buf = Buffer.alloc(1 << 20);
    const t0 = Date.now();
    for (let p = 0; p < passes; p++) {
      execFileSync('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)', file]);
      const fd = openSync(file, 'r');
      let off = 0;
      for (let n = readSync(fd, buf, 0, buf.length, off); n > 0; n = readSync(fd, buf, 0, buf.length, off)) off += n;
      closeSync(fd);
    }
    clearInterval(sampler);
    const after = rssOf(serverPid());
    await new Promise((r) => setTimeout(r, 10_000));
    const later = rssOf(serverPid());
    console.log(`streamed ${((passes * size) / 2 ** 30).toFixed(2)} GiB (${path.relative(mnts[0]!, file)}, ${(size / 1e6).toFixed(1)} MB × ${passes}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`  before ${mb(base)}; peak ${mb(peak)}; right after ${mb(after)}; 10 s later ${mb(later)}`);
  } finally {
    for (const m of mnts) execFileSync(process.execPath, [CLI, 'unmount', m, '--cache-dir', cache], { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
