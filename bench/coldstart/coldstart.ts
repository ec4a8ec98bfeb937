/**
 * Cold start (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/coldstart/coldstart.ts        RUNS=3 RATE_MB=100
 * A Python image made from this machine's files (image.ts), pushed to a real registry behind a proxy
 * that limits it to RATE_MB MB/s (10^6 bytes). Each trial starts with an empty cache and a dropped
 * page cache; clip and the baseline alternate:
 *   clip:      `clip mount INDEX MNT --background --cache-dir EMPTY`, then `chroot MNT python3 -c 'import json'`
 *   baseline:  `skopeo copy docker://PROXY/... oci:DIR:TAG`, `umoci unpack`, then the same chroot
 * The index is made beforehand through the proxy (so the mount reads through it too).
 * Prints a table and writes the figures into RESULTS.md (between the figures markers).
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { mountFiles } from '../../src/mount/files.js';
import { pushLayout } from '../../src/oci/push.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { skopeoCopy, umociUnpack } from '../../test/support/tools.js';
import { buildColdstartImage, IMAGE_TAG, PYTHON, type ColdstartImage } from './image.js';
import { profileOf, requestTable, type RequestProfile } from './profile.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from './throttle-proxy.js';

const execFileP = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-coldstart');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);
const RATE_MB = Number(process.env.RATE_MB ?? 100);
const REPOSITORY = 'bench/python';
/** What runs in the image: python's start, or PROGRAM (a JSON array: command and arguments). */
const PROGRAM: string[] = process.env.PROGRAM ? (JSON.parse(process.env.PROGRAM) as string[]) : [PYTHON, '-c', 'import json'];

/**
 * The settings every cold-start bench takes from its environment: the link (RATE_MB, in MB/s;
 * RTTS, round-trip times in ms, comma-separated) and INDEX_ARGS, more `clip index` options for a
 * published index (e.g. "--chunk-size 256KiB").
 */
export function linkSettings(defaultRtts: string): { rateMb: number; rtts: number[]; indexArgs: string[] } {
  const rtts = (process.env.RTTS ?? defaultRtts).split(',').map(Number);
  if (rtts.some((r) => !Number.isFinite(r) || r < 0)) throw new Error(`RTTS: round-trip times in ms, comma-separated (got ${process.env.RTTS})`);
  return {
    rateMb: Number(process.env.RATE_MB ?? 100),
    rtts,
    indexArgs: (process.env.INDEX_ARGS ?? '').split(' ').filter(Boolean),
  };
}

/**
 * VARIANTS="NAME:K=V,K2=V2;NAME2:K=V": one environment per name. A value may hold spaces and '='
 * (V8 flags): each variant splits at its first ':', each pair at its first '='.
 */
export function variantsFromEnv(): { name: string; env: Record<string, string> }[] {
  return (process.env.VARIANTS ?? '').split(';').filter(Boolean).map((v) => {
    const [name, kvs = ''] = v.split(/:(.*)/s) as [string, string?];
    return { name, env: Object.fromEntries(kvs.split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) };
  });
}

export interface Trial {
  kind: 'clip' | 'baseline';
  run: number;
  totalS: number;
  /** clip: mount ready; baseline: skopeo copy done. */
  firstS: number;
  /** baseline: umoci unpack done. */
  secondS?: number;
  /** clip: CPU seconds (user + system) the mount daemon had used when python ended. */
  daemonCpuS?: number;
  profile: RequestProfile;
  served: ServedRequest[];
}

export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await execFileP(cmd, args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

export const clip = (...args: string[]): Promise<string> => sh(process.execPath, [CLI, ...args]);

function dropCaches(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

export async function syncAndDrop(): Promise<void> {
  await sh('sync', []);
  dropCaches();
}

/**
 * Until a process has used no CPU for 200 ms (at most 5 s): a kept server (`clip server start`)
 * prepares for mounts once started, as a node's does at boot, long before its first mount.
 */
export async function cpuQuiet(pid: number): Promise<void> {
  if (!Number.isInteger(pid)) throw new Error("clip server start did not say the server's pid");
  const ticks = async (): Promise<number> => {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  };
  const until = Date.now() + 5000;
  let last = await ticks();
  for (let still = 0; still < 4 && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 50));
    const now = await ticks();
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

export const seconds = (since: number): number => (performance.now() - since) / 1000;

/** User + system CPU seconds of the daemon serving `mnt` (from its pid file and /proc; 100 ticks a second). */
async function daemonCpuSeconds(cacheDir: string, mnt: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(mountFiles(cacheDir, mnt).pid, 'utf8')).split('\n')[0]);
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (fields 14 and 15 of stat)
  } catch {
    return undefined;
  }
}

/** `image`: an index file or an image reference; `extra`: more `clip mount` options (--no-discover). */
export async function clipTrial(run: number, proxy: ThrottleProxy, image: string, scratch: string, extra: string[] = []): Promise<Trial> {
  const cacheDir = await mkdtemp(path.join(scratch, 'clip-cache-'));
  const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
  let mounted = false;
  try {
    await syncAndDrop();
    proxy.reset();
    const t0 = performance.now();
    await clip('mount', image, mnt, '--background', '--cache-dir', cacheDir, ...extra);
    mounted = true;
    const firstS = seconds(t0);
    await sh('chroot', [mnt, ...PROGRAM]);
    const totalS = seconds(t0);
    const served = [...proxy.served];
    const daemonCpuS = await daemonCpuSeconds(cacheDir, mnt);
    return { kind: 'clip', run, totalS, firstS, ...(daemonCpuS !== undefined ? { daemonCpuS } : {}), profile: profileOf(served), served };
  } finally {
    if (mounted) {
      await clip('unmount', mnt, '--cache-dir', cacheDir).catch(async (err: unknown) => {
        console.error(`clip unmount failed (${String(err)}); lazy unmount`);
        await sh('umount', ['-l', mnt]).catch(() => undefined);
      });
    }
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

export async function baselineTrial(run: number, proxy: ThrottleProxy, ref: string, scratch: string): Promise<Trial> {
  const dir = await mkdtemp(path.join(scratch, 'baseline-'));
  try {
    const layout = path.join(dir, 'oci');
    const bundle = path.join(dir, 'bundle');
    await syncAndDrop();
    proxy.reset();
    const t0 = performance.now();
    await skopeoCopy(`docker://${ref}`, `oci:${layout}:${IMAGE_TAG}`);
    const firstS = seconds(t0);
    const rootfs = await umociUnpack(layout, IMAGE_TAG, bundle);
    const secondS = seconds(t0);
    await sh('chroot', [rootfs, ...PROGRAM]);
    const totalS = seconds(t0);
    const served = [...proxy.served];
    return { kind: 'baseline', run, totalS, firstS, secondS, profile: profileOf(served), served };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function trialRow(t: Trial, img: ColdstartImage): string {
  const p = t.profile;
  const phases = t.kind === 'clip'
    ? `mount ready ${t.firstS.toFixed(2)} s, python ${(t.totalS - t.firstS).toFixed(2)} s; daemon CPU ${t.daemonCpuS?.toFixed(2) ?? '?'} s`
    : `copy ${t.firstS.toFixed(2)} s, unpack ${(t.secondS! - t.firstS).toFixed(2)} s, python ${(t.totalS - t.secondS!).toFixed(2)} s`;
  const share = (n: number): string => `${((100 * n) / img.compressedBytes).toFixed(1)} %`;
  return `| ${t.kind} | ${t.run} | ${t.totalS.toFixed(2)} s | ${phases} | ${mb(p.blobBytes)} (${share(p.blobBytes)}) | ${mb(p.distinctBlobBytes)} (${share(p.distinctBlobBytes)}) | ${p.requests} (${p.blobGets} blob GETs, ${p.rangeGets} ranged) | ${p.maxInFlight} | ${(p.busyMs / 1000).toFixed(2)} s |`;
}

function report(img: ColdstartImage, trials: Trial[], ctx: { command: string; date: string; loadBefore: number[]; loadAfter: number[]; indexS: number }): string {
  const clipT = trials.filter((t) => t.kind === 'clip');
  const baseT = trials.filter((t) => t.kind === 'baseline');
  const clipMed = median(clipT.map((t) => t.totalS));
  const baseMed = median(baseT.map((t) => t.totalS));
  const clipBytes = median(clipT.map((t) => t.profile.blobBytes));
  const clipDistinct = median(clipT.map((t) => t.profile.distinctBlobBytes));
  const pairs = clipT.map((c, i) => (baseT[i] ? (baseT[i].totalS / c.totalS).toFixed(1) : '-')).join(', ');
  const names = new Map(img.layers.map((l) => [l.digest, l.name]));
  const last = clipT.at(-1);
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(', ');
  return [
    `Command: \`${ctx.command}\` (as root, after \`npm run build\`)`,
    `Date: ${ctx.date}. Load average (1, 5, 15 min) before: ${load(ctx.loadBefore)}; after: ${load(ctx.loadAfter)}.`,
    `Proxy limit: ${RATE_MB} MB/s (10^6 bytes) shared by all responses. Runs: ${RUNS} of each, alternating, page cache dropped and caches empty before each.`,
    '',
    `Image: ${mb(img.compressedBytes)} compressed, ${mb(img.uncompressedBytes)} uncompressed, gzip layers:`,
    '',
    '| layer | entries | compressed | uncompressed |',
    '|---|---|---|---|',
    ...img.layers.map((l) => `| ${l.name} | ${l.entries} | ${mb(l.compressedSize)} | ${mb(l.uncompressedSize)} |`),
    '',
    `Index made beforehand through the proxy in ${ctx.indexS.toFixed(1)} s (not part of any trial).`,
    '',
    '| arm | run | total | phases | blob bytes served (share of compressed image) | distinct blob bytes | requests | max in flight | registry busy |',
    '|---|---|---|---|---|---|---|---|---|',
    ...trials.map((t) => trialRow(t, img)),
    '',
    `Median total: clip ${clipMed.toFixed(2)} s, baseline ${baseMed.toFixed(2)} s. **Ratio (baseline / clip): ${(baseMed / clipMed).toFixed(1)}x** (per pair: ${pairs}). Goal: at least 10x.`,
    `clip read **${((100 * clipBytes) / img.compressedBytes).toFixed(2)} %** of the image's compressed bytes (median ${clipBytes} of ${img.compressedBytes} bytes; distinct: ${((100 * clipDistinct) / img.compressedBytes).toFixed(2)} %). Goal: at most 10 %.`,
    '',
    ...(last ? [`Every request of clip run ${last.run} (ms since \`clip mount\` started):`, '', requestTable(last.served, names)] : []),
  ].join('\n');
}

const BEGIN = '<!-- figures:begin (written by coldstart.ts) -->';
const END = '<!-- figures:end -->';

/** Replace the figures between the markers in `file`, keeping whatever prose surrounds them (a new section at the end if none). */
export async function writeBetweenMarkers(file: string, markers: { begin: string; end: string; fresh: string }, figures: string): Promise<void> {
  const { begin, end } = markers;
  const old = existsSync(file) ? await readFile(file, 'utf8') : markers.fresh;
  const a = old.indexOf(begin);
  const b = old.indexOf(end);
  const next = a >= 0 && b > a ? `${old.slice(0, a + begin.length)}\n${figures}\n${old.slice(b)}` : `${old}\n${begin}\n${figures}\n${end}\n`;
  await writeFile(file, next);
}

const writeResults = (figures: string): Promise<void> => writeBetweenMarkers(RESULTS, { begin: BEGIN, end: END, fresh: `# Cold start benchmark\n\n${BEGIN}\n${END}\n` }, figures);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, chroot, drop_caches)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const loadBefore = loadavg();
  const date = new Date().toISOString();
  const img = await buildColdstartImage(WORK, (line) => console.log(line));
  console.log(`image ${img.reused ? 'reused' : 'built'}: ${mb(img.compressedBytes)} compressed, ${mb(img.uncompressedBytes)} uncompressed`);

  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  let proxy: ThrottleProxy | undefined;
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, IMAGE_TAG, `${registry.host}/${REPOSITORY}:${IMAGE_TAG}`);
    proxy = await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6 });
    const ref = `${proxy.host}/${REPOSITORY}:${IMAGE_TAG}`;
    const indexFile = path.join(scratch, 'image.clip');
    const indexCache = path.join(scratch, 'index-cache');
    let t0 = performance.now();
    await clip('index', ref, '-o', indexFile, '--cache-dir', indexCache, '--no-progress');
    const indexS = seconds(t0);
    await rm(indexCache, { recursive: true, force: true }); // the mounts must start from nothing
    console.log(`indexed through the proxy in ${indexS.toFixed(1)} s`);

    const trials: Trial[] = [];
    for (let run = 1; run <= RUNS; run++) {
      // Alternate which arm goes first, so neither always meets a machine the other just warmed.
      const order = run % 2 ? (['clip', 'baseline'] as const) : (['baseline', 'clip'] as const);
      for (const kind of order) {
        t0 = performance.now();
        const t = kind === 'clip' ? await clipTrial(run, proxy, indexFile, scratch) : await baselineTrial(run, proxy, ref, scratch);
        trials.push(t);
        console.log(trialRow(t, img));
      }
    }
    const figures = report(img, trials, {
      command: 'node --import tsx bench/coldstart/coldstart.ts' + (process.env.RUNS ? ` (RUNS=${RUNS})` : '') + (process.env.RATE_MB ? ` (RATE_MB=${RATE_MB})` : ''),
      date, loadBefore, loadAfter: loadavg(), indexS,
    });
    console.log(`\n${figures}`);
    await writeResults(figures);
    console.log(`\nwritten to ${RESULTS}`);
  } finally {
    await proxy?.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

// Run when executed, not when another bench imports its trials.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main();
