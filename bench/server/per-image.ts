/**
 * What each further mounted image adds to the node server (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/per-image.ts      ROUNDS=2 IMAGES=4 SETTLE_S=80 [VARIANTS="profile none"] [CLIS="a/dist/cli/main.js b/..."]
 * IMAGES images that share debian-python's two layers (`latest` and variants of it, as memory.ts
 * makes them; kept in PER_IMAGE_DIR, default .tmp/per-image) are mounted one after another on one
 * server, each read by `python3 -c 'import json, email, http.client'`, from a copy of a seed cache
 * in which every chunk read is on disk and every image has a startup profile, recorded in a fresh
 * cache of its own (so it carries learned checkpoints, as a profile from another node would).
 * Two variants: `profile` (the seed's profiles found: their learned checkpoints are handed over)
 * and `none` (the profiles removed from the copy). Arms (each CLI of CLIS, default this tree's
 * build) alternate in every round. With one image mounted, and with all, SETTLE_S after the last
 * mount (past the idle collection's second pass): the server's RSS (anon), V8 heap used and array
 * buffers from `clip server status`; at the end one heap snapshot (--heapsnapshot-signal, a full
 * collection first) gives the live heap and array buffers. Per image = (figure with IMAGES
 * mounted - figure with one) / (IMAGES - 1).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { askServer } from '../../src/server/client.js';
import { buildDebianPython } from '../images/debian-python.js';
import { variants } from './variants.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIS = (process.env.CLIS ?? path.join(REPO_ROOT, 'dist/cli/main.js')).split(/\s+/).filter(Boolean);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const IMAGES = Number(process.env.IMAGES ?? 4);
const SETTLE_MS = Number(process.env.SETTLE_S ?? 80) * 1000;
const VARIANTS = (process.env.VARIANTS ?? 'profile none').split(/\s+/).filter(Boolean);
const dir = path.resolve(process.env.PER_IMAGE_DIR ?? path.join(REPO_ROOT, '.tmp/per-image'));
const layout = path.join(dir, 'layout');
const seed = path.join(dir, 'seed');
const MB = 2 ** 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function clip(cli: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync('node', [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

function python(mnt: string): void {
  execFileSync('chroot', [mnt, '/usr/bin/python3', '-c', 'import json, email, http.client'], { stdio: 'ignore' });
}

interface Figures { rss: number; anon: number; heapUsed: number; arrayBuffers: number; external: number }

async function figures(cache: string): Promise<{ pid: number; f: Figures }> {
  const r = await askServer(cache, { op: 'status' });
  if (!r?.ok || r.op !== 'status') throw new Error('no server status');
  return { pid: r.pid, f: r.memory };
}

async function prepare(): Promise<string[]> {
  if (!existsSync(path.join(layout, 'index.json'))) {
    mkdirSync(dir, { recursive: true });
    const image = await buildDebianPython();
    await cp(image.layoutDir, layout, { recursive: true });
    await variants(layout, IMAGES - 1);
  }
  const tags = ['latest', ...Array.from({ length: IMAGES - 1 }, (_, i) => `v${i + 1}`)];
  if (!existsSync(path.join(seed, 'profiles')) || readdirSync(path.join(seed, 'profiles')).length < IMAGES) {
    // Each image recorded in a fresh cache of its own (its chunks fetched from the layout, so its
    // profile carries the checkpoints learned on the way, as one from another node would); then
    // the first image's cache, with every image's index and profile, is the seed.
    const mnt = path.join(dir, 'mnt-seed');
    mkdirSync(mnt, { recursive: true });
    for (const [i, tag] of tags.entries()) {
      const cache = i === 0 ? seed : path.join(dir, `seed-${tag}`);
      clip(CLIS[0]!, ['mount', `oci:${layout}:${tag}`, mnt, '--background', '--cache-dir', cache]);
      python(mnt);
      await sleep(4000); // the recording ends after 2 s of quiet, then is kept
      clip(CLIS[0]!, ['unmount', mnt, '--cache-dir', cache]);
      await sleep(6000);
      if (i > 0) {
        for (const d of ['indexes', 'scans', 'profiles']) if (existsSync(path.join(cache, d))) await cp(path.join(cache, d), path.join(seed, d), { recursive: true, force: false });
        rmSync(cache, { recursive: true, force: true });
      }
    }
  }
  return tags;
}

async function run(cli: string, variant: string, tags: string[], label: string): Promise<{ one: Figures; all: Figures; snap: { heap: number; buffers: number } }> {
  const w = path.join(dir, `run-${label}`);
  rmSync(w, { recursive: true, force: true });
  const cache = path.join(w, 'cache');
  await cp(seed, cache, { recursive: true });
  for (const d of ['server', 'mounts']) rmSync(path.join(cache, d), { recursive: true, force: true });
  if (variant === 'none') rmSync(path.join(cache, 'profiles'), { recursive: true, force: true });
  const env = { CLIP_FUSE_SLEEP_MS: '5000', CLIP_SERVER_V8_FLAGS: `${process.env.CLIP_SERVER_V8_FLAGS ?? '--max-semi-space-size=1 --expose-gc --interrupt-budget=540672'} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${w}` };
  const mnts = tags.map((t) => path.join(w, `mnt-${t}`));
  let one: Figures | undefined;
  let pid = 0;
  try {
    for (const [i, tag] of tags.entries()) {
      mkdirSync(mnts[i]!, { recursive: true });
      clip(cli, ['mount', `oci:${layout}:${tag}`, mnts[i]!, '--background', '--cache-dir', cache], env);
      python(mnts[i]!);
      // Measured with one image and with all: after the idle collection's second pass (65 s after
      // its first), so that both figures are as settled as a quiet server gets.
      if (i > 0 && i < tags.length - 1) continue;
      await sleep(SETTLE_MS);
      const r = await figures(cache);
      pid = r.pid;
      if (i === 0) one = r.f;
      console.log(`  ${label}: ${i + 1} image(s): RSS ${(r.f.rss / MB).toFixed(1)} (anon ${(r.f.anon / MB).toFixed(1)}), heap ${(r.f.heapUsed / MB).toFixed(1)}, array buffers ${(r.f.arrayBuffers / MB).toFixed(2)}`);
    }
    const all = (await figures(cache)).f;
    process.kill(pid, 'SIGUSR2');
    let snap = '';
    for (let t = 0; t < 120 && !snap; t++) {
      await sleep(1000);
      const f = readdirSync(w).find((n) => n.endsWith('.heapsnapshot'));
      if (f && statSync(path.join(w, f)).size > 0) {
        await sleep(2000);
        snap = path.join(w, f);
      }
    }
    const after = (await figures(cache)).f; // the snapshot collected all garbage first
    rmSync(snap, { force: true });
    return { one: one!, all, snap: { heap: after.heapUsed, buffers: after.arrayBuffers } };
  } finally {
    for (const m of mnts) if (existsSync(m)) try { clip(cli, ['unmount', m, '--cache-dir', cache]); } catch { /* not mounted */ }
    await sleep(7000); // the server ends 5 s after its last mount
    rmSync(w, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const tags = await prepare();
const rows: Record<string, number[][]> = {};
console.log(`${IMAGES} images, ${ROUNDS} rounds; load ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
for (let round = 1; round <= ROUNDS; round++) {
  for (const variant of VARIANTS) {
    for (const [a, cli] of CLIS.entries()) {
      const label = `arm${a}-${variant}-r${round}`;
      const r = await run(cli, variant, tags, label);
      const per = (k: keyof Figures): number => (r.all[k] - r.one[k]) / (IMAGES - 1) / MB;
      const row = [per('rss'), per('anon'), per('heapUsed'), per('arrayBuffers'), r.one.rss / MB, r.snap.heap / MB, r.snap.buffers / MB];
      (rows[`${variant} ${cli}`] ??= []).push(row);
      console.log(`${label} (${cli}): per further image RSS +${row[0]!.toFixed(2)} anon +${row[1]!.toFixed(2)} heap +${row[2]!.toFixed(2)} array buffers +${row[3]!.toFixed(2)} MB; one image ${row[4]!.toFixed(1)} MB; after a full collection with ${IMAGES}: heap ${row[5]!.toFixed(1)}, array buffers ${row[6]!.toFixed(2)} MB; load ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ')[0]}`);
    }
  }
}
console.log('\nmedians: per further image RSS / anon / heap / array buffers (MB); one image RSS; after GC with all: heap / array buffers');
for (const [k, rs] of Object.entries(rows)) console.log(`${k}: ${[0, 1, 2, 3, 4, 5, 6].map((i) => median(rs.map((r) => r[i]!)).toFixed(2)).join(' / ')}  (runs: ${rs.map((r) => r[0]!.toFixed(2)).join(', ')})`);
