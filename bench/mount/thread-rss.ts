/**
 * What each FUSE reader thread costs in server memory: the debian-python image mounted with
 * `clip mount --background` (a fresh server per run, disk cache warm), its largest files read once
 * through the mount, then the server's VmRSS and thread count; for CLIP_FUSE_THREADS = each of
 * THREADS (default 1,2,4), REPS times, interleaved. Run after bench/mount/fuse-peers.ts (which makes
 * the tree, the image and the warm cache):
 *   node --import tsx bench/mount/thread-rss.ts     # THREADS=1,2,4 REPS=3
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO, '.tmp/peers');
const LAYOUT = path.join(REPO, '.tmp/bench-images/debian-python/layout');
const CLIP = path.join(REPO, 'dist/cli/main.js');
const THREADS = (process.env.THREADS ?? '1,2,4').split(',').map(Number);
const REPS = Number(process.env.REPS ?? 3);
const execFileP = promisify(execFile);

function status(pid: number): { rssMb: number; threads: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMb: field('VmRSS') / 1024, threads: field('Threads') };
}

async function gone(pid: number): Promise<void> {
  for (let k = 0; k < 400 && existsSync(`/proc/${pid}`); k++) await new Promise((r) => setTimeout(r, 50));
}

const source = path.join(WORK, 'clip-cache');
if (!existsSync(source)) throw new Error('run bench/mount/fuse-peers.ts first (it warms .tmp/peers/clip-cache)');
const list = path.join(WORK, 'paths-largest.txt');
const rows: Record<number, number[]> = {};
for (let r = 0; r < REPS; r++) {
  for (const n of THREADS) {
    const cacheDir = path.join(WORK, `rss-cache-${n}`);
    const mnt = path.join(WORK, `rss-mnt-${n}`);
    await rm(cacheDir, { recursive: true, force: true });
    await cp(source, cacheDir, { recursive: true, filter: (p) => !p.includes('/server') });
    await mkdir(mnt, { recursive: true });
    const { stdout } = await execFileP('node', [CLIP, 'mount', `oci:${LAYOUT}:latest`, mnt, '--background', '--json', '--cache-dir', cacheDir], {
      env: { ...process.env, CLIP_FUSE_THREADS: String(n) },
    });
    const pid = Number((JSON.parse(stdout) as { pid: number }).pid);
    execFileSync('sh', ['-c', 'cd "$1" && tr "\\n" "\\0" < "$2" | xargs -0 cat > /dev/null', 'sh', mnt, list]);
    await new Promise((res) => setTimeout(res, 1000));
    const s = status(pid);
    (rows[n] ??= []).push(s.rssMb);
    console.log(`round ${r + 1} threads ${n}: server ${pid} RSS ${s.rssMb.toFixed(1)} MB, ${s.threads} OS threads`);
    await execFileP('node', [CLIP, 'unmount', mnt, '--cache-dir', cacheDir]);
    await gone(pid);
    await rm(cacheDir, { recursive: true, force: true });
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log('\n| reader threads | server RSS, median (min–max) |\n|---|---|');
for (const n of THREADS) console.log(`| ${n} | ${median(rows[n]!).toFixed(1)} MB (${Math.min(...rows[n]!).toFixed(1)}–${Math.max(...rows[n]!).toFixed(1)}) |`);
