/**
 * What a cold mount does between the published index blob's last byte and "index ready" (issue 12),
 * step by step, in fresh processes (the code cold, as on a kept server's first mount), run by hand
 * after `npm run build`:
 *   node --import tsx bench/index/index-checks.ts        RUNS=9 BASE=DIR[,DIR2]
 * The debian-python image's index (made once into .tmp/bench-index-checks, or INDEX=FILE) is split
 * and packed as `clip index --push` publishes it. Each round, each build in turn (this one, then
 * BASE's built checkouts) runs one process that times: unpackIndex (the gzip blob inflated), the
 * index's checks (ImageIndex: trailer, fields, tree, block boundaries), and storeCachedIndex (the
 * local copy, written and synced) into an empty cache directory. Prints medians (min–max) per
 * build and step and the load average; writes nothing.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { splitWindows } from '../../src/index/published.js';
import { packIndex } from '../../src/storage/index-artifact.js';
import { median } from '../coldstart/coldstart.js';
import { debianPythonIndexFile } from '../images/debian-python.js';

const execFileP = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-index-checks');
const RUNS = Number(process.env.RUNS ?? 9);
const BUILDS = [
  { name: 'this', dist: path.join(REPO_ROOT, 'dist') },
  ...(process.env.BASE ?? '').split(',').filter(Boolean).map((dir) => ({ name: path.basename(dir), dist: path.join(path.resolve(dir), 'dist') })),
];
const STEPS = ['unpack', 'check', 'store'] as const;

/** The steps, timed in a process of their own: prints one JSON line of milliseconds. */
const CHILD = `
const [dist, packedFile, cacheDir] = process.argv.slice(1);
const { readFile } = await import('node:fs/promises');
const art = await import(dist + '/storage/index-artifact.js');
const { ImageIndex } = await import(dist + '/index/reader.js');
const { storeCachedIndex } = await import(dist + '/storage/indexer.js');
const packed = await readFile(packedFile);
let t = performance.now();
const lap = () => { const now = performance.now(); const ms = now - t; t = now; return ms; };
const bytes = await art.unpackIndex(packed, 'bench');
const unpack = lap();
const index = new ImageIndex(bytes, 'bench');
const check = lap();
await storeCachedIndex(cacheDir, index.image.manifestDigest, bytes);
const store = lap();
console.log(JSON.stringify({ unpack, check, store }));
`;

async function main(): Promise<void> {
  await mkdir(WORK, { recursive: true });
  const { eager } = splitWindows(await readFile(await debianPythonIndexFile()), 'debian-python index');
  const packed = await packIndex(eager);
  const packedFile = path.join(WORK, 'index.gz');
  await writeFile(packedFile, packed);
  console.log(`index as published: ${eager.length} bytes, packed ${packed.length}; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const times = new Map(BUILDS.map((b) => [b.name, STEPS.map(() => [] as number[])]));
  for (let r = 0; r < RUNS; r++) {
    for (const b of BUILDS) {
      const cacheDir = path.join(WORK, `store-${b.name}-${r}`);
      await rm(cacheDir, { recursive: true, force: true });
      const { stdout } = await execFileP('node', ['--input-type=module', '-e', CHILD, b.dist, packedFile, cacheDir]);
      const got = JSON.parse(stdout) as Record<(typeof STEPS)[number], number>;
      STEPS.forEach((s, k) => times.get(b.name)![k]!.push(got[s]));
      await rm(cacheDir, { recursive: true, force: true });
    }
  }
  const fmt = (xs: number[]): string => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
  console.log(`\n| build | ${STEPS.join(' ms | ')} ms |\n|---|${STEPS.map(() => '---|').join('')}`);
  for (const b of BUILDS) console.log(`| ${b.name} | ${times.get(b.name)!.map(fmt).join(' | ')} |`);
  console.log(`\n${RUNS} rounds, builds alternating; load after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
