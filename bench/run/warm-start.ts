/**
 * A warm container start (issue 11 item 1; run by hand, as root, after `npm run build`):
 *   ROUNDS=10 BASELINE_CLI=/path/to/main/dist/cli/main.js node --import tsx bench/run/warm-start.ts
 * The debian-python image (bench/images/debian-python.ts) in a real registry, no proxy. Everything
 * is in place before the clock: the image pulled and unpacked by a containerd of the bench's own
 * (overlayfs), and mounted by each clip build's server (a first `clip run` of it, untimed, whose
 * mount lingers). Then ROUNDS rounds, the arms in rotating order in each, each timed to the end of
 * `python3 -c 'import json'`:
 *   ctr run:            `ctr run --rm REF ID python3 -c 'import json'` (containerd + runc; overlayfs)
 *   clip run:           `clip run REF -- python3 …` of this build (joins the lingering mount)
 *   clip run (before):  the same with BASELINE_CLI (another build, e.g. main's)
 *   clip run (bundled): this build bundled into one file per entry by esbuild (BUNDLE=1), to see
 *                       whether bundling cuts module loading enough to keep
 *   runc run:           `runc run` of a bundle `clip bundle` made once (runc + python on the same
 *                       lazy mount, no Node): the floor of the clip run path below Node
 *   node -e 0:          a bare Node start: the floor of anything a Node CLI does
 * The load average is recorded with every round. Prints a table and writes it into
 * bench/run/RESULTS.md between the warm-start markers (WRITE=0 leaves the file alone).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushLayout } from '../../src/oci/push.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { startContainerd, type TestContainerd } from '../../test/snapshotter/containerd.js';
import { median, sh, writeBetweenMarkers } from '../coldstart/coldstart.js';
import { buildDebianPython, describeImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-warm-start');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const ROUNDS = Number(process.env.ROUNDS ?? 10);
const BASELINE_CLI = process.env.BASELINE_CLI;
const PROGRAM = ['python3', '-c', 'import json'];

type Arm = 'ctr run' | 'clip run' | 'clip run (before)' | 'clip run (bundled)' | 'runc run' | 'node -e 0';

/**
 * Wall seconds of one command, run to its end (its output discarded; a failure throws), and the
 * CPU seconds (user + system) of it and the children it waited for, from /usr/bin/time: for a
 * `clip run` that is clip's own work plus runc's (the container's python is not its child).
 */
async function timed(cmd: string, args: string[]): Promise<{ wall: number; cpu: number }> {
  const out = path.join(WORK, `time-${process.pid}`);
  const wall = await new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('/usr/bin/time', ['-o', out, '-f', '%U %S', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve((performance.now() - t0) / 1000) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.slice(-2000)}`))));
  });
  const [user, sys] = (await readFile(out, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number);
  return { wall, cpu: user! + sys! };
}

/**
 * This build's CLI bundled by esbuild into one file (plus chunks for its lazy imports; the native
 * and heavy packages left out). Only for warm runs: a bundle's import.meta.url is its chunk's, so
 * the processes it would start by path (the server's holder, the linger reaper) are not found;
 * the arm's server and mount are started by the unbundled build.
 */
async function bundle(out: string): Promise<string> {
  const external = ['koffi', 'lmdb', '@grpc/*', 'protobufjs', 'ioredis', 'undici', 'prom-client', 'cli-progress', 'tsx'].map((e) => `--external:${e}`);
  await sh(path.join(REPO_ROOT, 'node_modules/.bin/esbuild'), [
    CLI, '--bundle', '--platform=node', '--format=esm', '--splitting', `--outdir=${out}`, ...external,
    "--banner:js=import { createRequire as __clipRequire } from 'node:module'; const require = __clipRequire(import.meta.url);", '--log-level=warning',
  ]);
  return path.join(out, 'main.js');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (containerd, runc, mounts)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  const clis: Array<[Arm, string]> = [['clip run', CLI]];
  if (BASELINE_CLI) clis.push(['clip run (before)', BASELINE_CLI]);
  if (process.env.BUNDLE === '1') clis.push(['clip run (bundled)', await bundle(path.join(REPO_ROOT, '.tmp/bench-warm-start-bundle'))]);
  let registry: TestRegistry | undefined;
  let ctrd: TestContainerd | undefined;
  const savedTmp = process.env.TMPDIR;
  const cacheOf = (arm: Arm): string => path.join(scratch, arm.replace(/\W+/g, '-'));
  const bundleDir = path.join(scratch, 'bundle');
  const runcRoot = path.join(scratch, 'runc');
  try {
    registry = await startRegistry();
    const ref = `${registry.host}/bench/debian-python:${img.tag}`;
    await pushLayout(img.layoutDir, img.tag, ref);
    process.env.TMPDIR = scratch;
    ctrd = await startContainerd(path.join(scratch, 'no-snapshotter.sock'));
    await ctrd.ctr('images', 'pull', '--plain-http', ref);
    let n = 0;
    const ctrRun = (): Promise<{ wall: number; cpu: number }> => timed('ctr', ['--address', ctrd!.address, '--namespace', ctrd!.namespace, 'run', '--rm', ref, `warm-${process.pid}-${++n}`, ...PROGRAM]);
    // Untimed: each build indexes and mounts the image once (the mount lingers 60 s after each run).
    for (const [arm, cli] of clis) await timed(process.execPath, [arm.endsWith('(bundled)') ? CLI : cli, 'run', ref, '--cache-dir', cacheOf(arm), '--', ...PROGRAM]);
    await sh(process.execPath, [CLI, 'bundle', ref, bundleDir, '--cache-dir', cacheOf('runc run'), '--', ...PROGRAM]);
    await mkdir(runcRoot, { recursive: true });
    await ctrRun();

    const arms: Arm[] = ['ctr run', ...clis.map(([a]) => a), 'runc run', 'node -e 0'];
    const runArm = (arm: Arm): Promise<{ wall: number; cpu: number }> => {
      if (arm === 'ctr run') return ctrRun();
      if (arm === 'runc run') return timed('runc', ['--root', runcRoot, 'run', '--bundle', bundleDir, `warm-${process.pid}-${++n}`]);
      if (arm === 'node -e 0') return timed(process.execPath, ['-e', '0']);
      return timed(process.execPath, [clis.find(([a]) => a === arm)![1], 'run', ref, '--cache-dir', cacheOf(arm), '--', ...PROGRAM]);
    };
    const times = new Map<Arm, number[]>(arms.map((a) => [a, []]));
    const cpus = new Map<Arm, number[]>(arms.map((a) => [a, []]));
    const loads: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      loads.push(loadavg()[0]!);
      for (const arm of arms.map((_, i) => arms[(i + round - 1) % arms.length]!)) {
        const { wall, cpu } = await runArm(arm);
        times.get(arm)!.push(wall);
        cpus.get(arm)!.push(cpu);
      }
      console.log(`round ${round} (load ${loads.at(-1)!.toFixed(1)}): ${arms.map((a) => `${a} ${times.get(a)!.at(-1)!.toFixed(3)}`).join(', ')}`);
    }
    const base = median(times.get('ctr run')!);
    const rows = arms.map((a) => {
      const t = times.get(a)!;
      const c = cpus.get(a)!;
      const perRound = t.map((x, i) => (times.get('ctr run')![i]! / x).toFixed(2));
      return `| ${a} | ${median(t).toFixed(3)} s (${Math.min(...t).toFixed(3)}–${Math.max(...t).toFixed(3)}) | ${median(c).toFixed(2)} s (${Math.min(...c).toFixed(2)}–${Math.max(...c).toFixed(2)}) | ${(base / median(t)).toFixed(2)}x (per round ${perRound.join(', ')}) |`;
    });
    const figures = [
      `Command: \`${['ROUNDS', 'BASELINE_CLI', 'BUNDLE'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('')}node --import tsx bench/run/warm-start.ts\` (as root, after \`npm run build\`)`,
      `Date: ${new Date().toISOString()}. 2 cores shared with other sessions; load average (1 min) at each round: ${loads.map((l) => l.toFixed(1)).join(', ')}.`,
      'Registry: docker-registry 2.8, no proxy. containerd 1.6 (Debian), overlayfs, the image pulled before.',
      '',
      `Image: ${describeImage(img)}`,
      '',
      '| arm | wall time, median of the rounds (min–max) | CPU (user + system, the process and the children it waited for) | ctr run / arm (wall) |',
      '|---|---|---|---|',
      ...rows,
    ].join('\n');
    console.log(`\n${figures}`);
    if (process.env.WRITE !== '0') {
      await writeBetweenMarkers(RESULTS, { begin: '<!-- warm-start:begin (written by warm-start.ts) -->', end: '<!-- warm-start:end -->', fresh: '' }, figures);
    }
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await ctrd?.stop();
    await sh(process.execPath, [CLI, 'bundle', '--remove', bundleDir, '--cache-dir', cacheOf('runc run')]).catch(() => undefined);
    for (const [arm, cli] of [...clis, ['runc run', CLI] as [Arm, string]]) {
      await sh(process.execPath, [arm.endsWith('(bundled)') ? CLI : cli, 'run', '--cleanup', '--cache-dir', cacheOf(arm)]).catch(() => undefined);
    }
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
}

await main();
