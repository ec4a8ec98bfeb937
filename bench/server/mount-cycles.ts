/**
 * What the node server keeps of the images it unmounted (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/mount-cycles.ts      CYCLES=3 IMAGES=10 SETTLE_S=20
 * One image of debian-python stays mounted; CYCLES times, IMAGES variants of it (as memory.ts makes
 * them; kept with the cache in CYCLES_DIR, default .tmp/cycles, between runs) are mounted, read
 * (python3.11 whole, `ls -R` of its library) and unmounted. The server's RSS (anon, file) and
 * process.memoryUsage() from its status: settled before, after each cycle, and 10, 30, 80 s after
 * the last (the idle collection runs once the server is quiet). CLIP_FUSE_SLEEP_MS=5000, so the
 * reader thread is asleep in the settled figures. CLIP_CLI: another build's CLI (the baseline).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { askServer } from '../../src/server/client.js';
import { buildDebianPython } from '../images/debian-python.js';
import { variants } from './variants.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = process.env.CLIP_CLI ?? path.join(REPO_ROOT, 'dist/cli/main.js');
const CYCLES = Number(process.env.CYCLES ?? 3);
const IMAGES = Number(process.env.IMAGES ?? 10);
const SETTLE_MS = Number(process.env.SETTLE_S ?? 20) * 1000;
const dir = path.resolve(process.env.CYCLES_DIR ?? path.join(REPO_ROOT, '.tmp/cycles'));
const layout = path.join(dir, 'layout');
const cache = path.join(dir, 'cache');
const env = { ...process.env, CLIP_FUSE_SLEEP_MS: '5000' };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mnt = (i: number): string => {
  const m = path.join(dir, `mnt${i}`);
  mkdirSync(m, { recursive: true });
  return m;
};
const mount = (i: number, tag: string): void => {
  execFileSync(process.execPath, [CLI, 'mount', `oci:${layout}:${tag}`, mnt(i), '--background', '--cache-dir', cache], { stdio: ['ignore', 'ignore', 'inherit'], env });
};
const unmount = (i: number): void => {
  execFileSync(process.execPath, [CLI, 'unmount', mnt(i), '--cache-dir', cache], { stdio: 'ignore' });
};

async function sample(label: string): Promise<void> {
  const r = await askServer(cache, { op: 'status' });
  if (!r?.ok || r.op !== 'status') throw new Error('no server status');
  const st = readFileSync(`/proc/${r.pid}/status`, 'utf8');
  const kb = (k: string): string => (Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) / 1024).toFixed(1);
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  const m = r.memory;
  console.log(`${label}: rss ${kb('VmRSS')} anon ${kb('RssAnon')} file ${kb('RssFile')} threads ${Number(/^Threads:\s+(\d+)/m.exec(st)?.[1])} | heapUsed ${mib(m.heapUsed)} heapTotal ${mib(m.heapTotal)} arrayBuffers ${mib(m.arrayBuffers)}`);
}

async function main(): Promise<void> {
  let tags: string[];
  if (existsSync(path.join(dir, 'tags.json'))) tags = JSON.parse(readFileSync(path.join(dir, 'tags.json'), 'utf8')) as string[];
  else {
    const image = await buildDebianPython();
    mkdirSync(dir, { recursive: true });
    await cp(image.layoutDir, layout, { recursive: true });
    tags = ['latest', ...(await variants(layout, IMAGES))];
    writeFileSync(path.join(dir, 'tags.json'), JSON.stringify(tags));
  }
  if (tags.length < IMAGES + 1) throw new Error(`${dir} has ${tags.length - 1} variants; IMAGES=${IMAGES} needs a fresh CYCLES_DIR`);
  mount(0, tags[0]!);
  try {
    await sleep(SETTLE_MS);
    await sample('1 image, settled');
    for (let c = 1; c <= CYCLES; c++) {
      for (let i = 1; i <= IMAGES; i++) mount(i, tags[i]!);
      for (let i = 1; i <= IMAGES; i++) {
        execFileSync('sh', ['-c', `cat "${mnt(i)}/usr/bin/python3.11" > /dev/null && ls -R "${mnt(i)}/usr/lib/python3.11" > /dev/null`]);
      }
      for (let i = 1; i <= IMAGES; i++) unmount(i);
      await sample(`cycle ${c}: ${IMAGES} images mounted, read, unmounted`);
    }
    let waited = 0;
    for (const s of [10, 30, 80]) {
      await sleep((s - waited) * 1000);
      waited = s;
      await sample(`1 image, ${s} s after the last cycle`);
    }
  } finally {
    unmount(0);
  }
}

await main();
