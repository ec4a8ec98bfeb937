/**
 * Cold start with a startup profile (issue 12, item 1), run by hand as root after `npm run build`:
 *   node --import tsx bench/index/profiled-mount.ts        RUNS=3 RATE_MB=100 RTTS=0,25
 * The debian-python image (bench/images/debian-python.ts) is pushed to a real registry twice, in
 * repositories P and U, each with its index published (`clip index --push`). Into P a profile is
 * pushed (`clip profile REF --push -- python3 -c 'import json'`, run with runc); U has none. A
 * profile of another workload (`perl -MPOSIX -e 1; dpkg -l`) is recorded on U's index too. Behind
 * the throttle proxy of bench/coldstart (RATE_MB MB/s, one proxy per RTT), RUNS rounds; in each,
 * per RTT, these arms in rotating order, each from an empty cache directory, page cache dropped,
 * timed from `clip mount` to the end of `chroot MNT python3 -c 'import json'`:
 *   profiled:      image P (the mount finds the python profile in the registry and prefetches it)
 *   unprofiled:    image U (no profile anywhere: the mount reads on demand and records)
 *   other-profile: image U with the other workload's profile in the cache directory
 *   warm:          image U, a cache directory that a run before filled (page cache dropped): the
 *                  warm-cache run time of the physical limit (its node server is still up from
 *                  that run, as on any node that ran something in the last seconds)
 *   profiled-served, unprofiled-served, warm-served: as profiled / unprofiled / warm, on a node
 *                  whose server was kept running (`clip server start` on the cache directory before
 *                  the page cache is dropped and the clock starts, and the server's CPU quiet: a
 *                  node's boot starts it, and it prepares for mounts once started); `clip
 *                  mount` then hands the image to the server to resolve. The served arms' physical
 *                  limit comes from warm-served (the same path, warm) when it ran
 *   profiled-seasoned: as profiled-served, on a kept server that first served a cold mount of
 *                  another image (the demo image of src/demo, no layer in common, its own index
 *                  and profile published: its program run from an empty cache, then unmounted),
 *                  as a fleet's long-lived server has: the cold path's code has run once in it
 * The bytes python needs, compressed: for each range of the python profile (what the kernel asked
 * of the mount, readahead included), the compressed bytes between its ends, each end placed by
 * linear interpolation between the index's gzip checkpoints around it (the "interpolated" figure);
 * and, as an upper bound, from the checkpoint before each range to the one after it.
 * Physical limit = warm median + needed (interpolated) / bandwidth + 3 RTT.
 * BASE=DIR (a checkout built from main): the same rounds with that build too, each build's arms
 * interleaved (ARMS picks them; default profiled,warm with BASE), each on the index and profile this
 * build published (the formats are the same); each build's limit from its own warm arm.
 * VARIANTS="NAME:K=V,K2=V2;NAME2:K=V": this build again under each NAME, with that environment for
 * its `clip` commands (the node server they start inherits it), interleaved the same way.
 * Writes its figures into bench/index/RESULTS.md between its markers.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageIndex } from '../../src/index/reader.js';
import { pushLayout } from '../../src/oci/push.js';
import { decodeProfile, type ProfileRange } from '../../src/profile/format.js';
import { localProfilePath } from '../../src/profile/store.js';
import { serverFiles } from '../../src/server/paths.js';
import { cachedIndexPath } from '../../src/storage/indexer.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { clip, cpuQuiet, linkSettings, median, seconds, sh, syncAndDrop, variantsFromEnv, writeBetweenMarkers } from '../coldstart/coldstart.js';
import { profileOf } from '../coldstart/profile.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage } from '../images/debian-python.js';
import { APP_PATH, buildDemoImage, DEMO_TAG, findPython } from '../../src/demo/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-profiled-mount');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);
const { rateMb: RATE_MB, rtts: RTTS, indexArgs: INDEX_ARGS } = linkSettings('0,25');
const PROGRAM = ['python3', '-c', 'import json'];
const OTHER = ['/bin/sh', '-c', 'perl -MPOSIX -e 1; dpkg -l >/dev/null'];
const P_REPO = 'bench/profiled';
/** The image a profiled-seasoned arm's server serves first (the demo image: no layer in common). */
const S_REPO = 'bench/seasoning';
const U_REPO = 'bench/unprofiled';

type Arm = 'profiled' | 'unprofiled' | 'other-profile' | 'warm' | 'profiled-served' | 'unprofiled-served' | 'warm-served' | 'profiled-seasoned';
const ARMS: Arm[] = (process.env.ARMS ?? (process.env.BASE || process.env.VARIANTS ? 'profiled,warm' : 'profiled,unprofiled,other-profile,warm')).split(',') as Arm[];
interface Build { name: string; cli: string; env?: Record<string, string> }
const BUILDS: Build[] = [
  { name: 'this build', cli: CLI },
  ...(process.env.BASE ? [{ name: 'before', cli: path.join(path.resolve(process.env.BASE), 'dist/cli/main.js') }] : []),
  ...variantsFromEnv().map(({ name, env }) => ({ name, cli: CLI, env })),
];

interface Row {
  build: string;
  arm: Arm;
  run: number;
  rtt: number;
  readyS: number;
  totalS: number;
  layerBytes: number;
  distinctLayerBytes: number;
  requests: number;
  /** What the mount's log says of the profile: where it was found and what its prefetch fetched. */
  profile: string;
}

/** Compressed bytes of `ranges` in an index: interpolated between checkpoints, and checkpoint-bounded. */
function neededCompressed(index: ImageIndex, ranges: readonly ProfileRange[]): { interpolated: number; bounded: number; uncompressed: number } {
  let interpolated = 0;
  let bounded = 0;
  let uncompressed = 0;
  for (let l = 0; l < index.layers.length; l++) {
    const layer = index.layers[l]!;
    // Merge the layer's ranges (a byte read twice counts once).
    const rs = ranges.filter((r) => r.layer === l).map((r) => [r.offset, r.offset + r.length] as [number, number]).sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of rs) {
      const last = merged.at(-1);
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([...r]);
    }
    const points: { out: number; in: number }[] = [{ out: 0, in: 0 }];
    for (let i = 0; i < index.checkpointCount(l); i++) {
      const p = index.checkpointPosition(l, i);
      if (p.out > points.at(-1)!.out) points.push({ out: p.out, in: p.in });
    }
    points.push({ out: layer.uncompressedSize, in: layer.compressedSize });
    const around = (o: number): [number, number] => {
      let k = 0;
      while (k + 1 < points.length - 1 && points[k + 1]!.out <= o) k++;
      return [k, k + 1];
    };
    const at = (o: number): number => {
      const [a, b] = around(o);
      const pa = points[a]!;
      const pb = points[b]!;
      return pa.in + ((o - pa.out) * (pb.in - pa.in)) / Math.max(1, pb.out - pa.out);
    };
    for (const [s, e] of merged) {
      uncompressed += e - s;
      interpolated += at(e) - at(s);
      bounded += points[around(e - 1)[1]]!.in - points[around(s)[0]]!.in;
    }
  }
  return { interpolated, bounded, uncompressed };
}

/** What a profiled-seasoned server serves before the measured mount: an image and the program run in it. */
interface Seasoning { image: string; program: string[] }

async function trial(build: Build, arm: Arm, run: number, rtt: number, proxy: ThrottleProxy, image: string, scratch: string, prepare?: (cacheDir: string) => Promise<void>, seasoning?: Seasoning): Promise<Row> {
  const env = { ...process.env, ...build.env };
  const clip = (...args: string[]): Promise<string> => new Promise((done, fail) => execFile(process.execPath, [build.cli, ...args], { env }, (err, out, stderr) => (err ? fail(new Error(`clip ${args.join(' ')}: ${stderr || err.message}`)) : done(out))));
  const cacheDir = await mkdtemp(path.join(scratch, 'cache-'));
  const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
  const once = async (): Promise<{ readyS: number; totalS: number; served: ServedRequest[] }> => {
    await syncAndDrop();
    proxy.reset();
    const t0 = performance.now();
    await clip('mount', image, mnt, '--background', '--cache-dir', cacheDir);
    const readyS = seconds(t0);
    try {
      await sh('chroot', [mnt, ...PROGRAM]);
      return { readyS, totalS: seconds(t0), served: [...proxy.served] };
    } finally {
      await clip('unmount', mnt, '--cache-dir', cacheDir).catch(async () => sh('umount', ['-l', mnt]).catch(() => undefined));
    }
  };
  const served = arm.endsWith('-served') || arm === 'profiled-seasoned';
  try {
    await prepare?.(cacheDir);
    if (arm === 'warm' || arm === 'warm-served') await once(); // fills the cache directory
    if (served) await cpuQuiet(Number(/server pid (\d+)/.exec(await clip('server', 'start', '--cache-dir', cacheDir))?.[1]));
    if (seasoning) {
      // The kept server's first mount: another image, cold, its program run to the end.
      await clip('mount', seasoning.image, mnt, '--background', '--cache-dir', cacheDir);
      try {
        await sh('chroot', [mnt, ...seasoning.program]);
      } finally {
        await clip('unmount', mnt, '--cache-dir', cacheDir);
      }
    }
    const logFrom = seasoning ? (await readFile(serverFiles(cacheDir).log).catch(() => Buffer.alloc(0))).length : 0;
    const t = await once();
    const log = (await readFile(serverFiles(cacheDir).log).catch(() => Buffer.alloc(0))).subarray(logFrom).toString('utf8'); // the measured mount's part
    const found = /"profile":"([^"]*)"[^\n]*profile: found/.exec(log)?.[1];
    const done = /"bytes":(\d+)[^\n]*profile: prefetch done/.exec(log)?.[1];
    const ignored = /"err":"([^"]*)"[^\n]*profile: unusable/.exec(log)?.[1];
    const profile = (found ? `${found.includes('@') ? 'registry' : found.startsWith('shared') ? 'shared' : 'cache'}, prefetched ${mb(Number(done ?? 0))}` : log.includes('recorded and kept') ? 'none (recorded)' : 'none')
      + (ignored ? `; ignored one: ${ignored.replace(/\|/g, '/')}` : '');
    const layerGets = t.served.filter((r) => /\/blobs\/sha256:/.test(r.path) && r.range !== undefined);
    return {
      build: build.name, arm, run, rtt, readyS: t.readyS, totalS: t.totalS,
      layerBytes: layerGets.reduce((n, r) => n + r.bytes, 0),
      distinctLayerBytes: layerGets.length ? profileOf(layerGets).distinctBlobBytes : 0,
      requests: t.served.length, profile,
    };
  } finally {
    if (served) await clip('server', 'stop', '--cache-dir', cacheDir).catch((err: unknown) => console.warn(String(err)));
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`;
const s2 = (x: number): string => `${x.toFixed(2)} s`;
const spread = (xs: number[], f: (x: number) => string): string => `${f(median(xs))} (${f(Math.min(...xs))} to ${f(Math.max(...xs))})`;

// A run with INDEX_ARGS writes between markers of its own, after the default run's.
const TAG = INDEX_ARGS.length ? `profiled-mount(${INDEX_ARGS.join(' ')})` : process.env.BASE ? 'profiled-mount(before-after)' : 'profiled-mount';
const BEGIN = `<!-- ${TAG}:begin (written by profiled-mount.ts) -->`;
const END = `<!-- ${TAG}:end -->`;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const date = new Date().toISOString();
  const uptimeBefore = (await sh('uptime', [])).trim();
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  const proxies = new Map<number, ThrottleProxy>();
  try {
    registry = await startRegistry();
    for (const repo of [P_REPO, U_REPO]) await pushLayout(img.layoutDir, img.tag, `${registry.host}/${repo}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const first = proxies.get(RTTS[0]!)!;
    const refOf = (p: ThrottleProxy, repo: string): string => `${p.host}/${repo}:${img.tag}`;
    // Publish: both indexes; the python profile into P; the other workload's profile kept aside.
    // Each repository's index from a publisher cache of its own: with INDEX_ARGS, `clip index` never
    // reuses a cached index (src/cli/actions/index.ts) and two builds of one image differ in digest,
    // so U's index made in P's cache replaced the one the python profile is recorded on, and every
    // profiled mount (which finds P's pushed index) ignored the profile as stale.
    const pub = path.join(scratch, 'publisher');
    const pubU = path.join(scratch, 'publisher-u');
    await clip('index', refOf(first, P_REPO), '--push', '--cache-dir', pub, '--no-progress', ...INDEX_ARGS);
    await clip('index', refOf(first, U_REPO), '--push', '--cache-dir', pubU, '--no-progress', ...INDEX_ARGS);
    const t0 = performance.now();
    const made = JSON.parse((await clip('profile', refOf(first, P_REPO), '--push', '--cache-dir', pub, '--json', '--', ...PROGRAM)).trim().split('\n').at(-1)!) as {
      manifestDigest: string; ranges: number; bytesRead: number; profileBytes: number; pushed: string; file: string;
    };
    const profileS = seconds(t0);
    const pythonProfile = decodeProfile(await readFile(made.file), made.file);
    const index = await ImageIndex.open(cachedIndexPath(pub, made.manifestDigest));
    // The same manifest in both repositories: the other workload is profiled on the index U's
    // mounts find (U's publisher cache holds the index pushed to U).
    await clip('profile', refOf(first, U_REPO), '--cache-dir', pubU, '--json', '--', ...OTHER);
    const otherFile = localProfilePath(pubU, made.manifestDigest);
    const other = decodeProfile(await readFile(otherFile), otherFile);
    const need = neededCompressed(index, pythonProfile.ranges);
    // Learned checkpoints the python profile carries to the next node (issue 12 item 2), per layer.
    const learnedPerLayer = [...pythonProfile.learned].map(([l, list]) => `layer ${l}: ${list.length}`);
    const learnedCount = [...pythonProfile.learned.values()].reduce((n, list) => n + list.length, 0);
    const learnedDesc = learnedCount ? `${learnedCount} learned checkpoints (${learnedPerLayer.join(', ')})` : 'no learned checkpoint';
    console.log(`python profile carries ${learnedDesc}`);
    // The other image a profiled-seasoned server serves first, published the same way (index and profile).
    let seasoning: { program: string[] } | undefined;
    if (ARMS.includes('profiled-seasoned')) {
      const demo = await buildDemoImage({ dir: path.join(WORK, 'demo') });
      await pushLayout(demo.layoutDir, DEMO_TAG, `${registry.host}/${S_REPO}:${DEMO_TAG}`);
      seasoning = { program: [(await findPython()).binary, '-I', APP_PATH] };
      const pubS = path.join(scratch, 'publisher-s');
      const ref = `${first.host}/${S_REPO}:${DEMO_TAG}`;
      await clip('index', ref, '--push', '--cache-dir', pubS, '--no-progress', ...INDEX_ARGS);
      await clip('profile', ref, '--push', '--cache-dir', pubS, '--json', '--', APP_PATH); // after the image's entrypoint (python -I)
    }
    console.log(`python profile: ${made.ranges} ranges, ${mb(made.bytesRead)} uncompressed, ${made.profileBytes} bytes; needed compressed ${mb(need.interpolated)} interpolated, ${mb(need.bounded)} checkpoint-bounded; other profile ${other.ranges.length} ranges`);

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const [rtt, via] of proxies) {
        const pairs = BUILDS.flatMap((b) => ARMS.map((a) => [b, a] as const));
        const order = pairs.map((_, i) => pairs[(i + run - 1) % pairs.length]!);
        for (const [build, arm] of order) {
          const row = arm === 'profiled' || arm === 'profiled-served' ? await trial(build, arm, run, rtt, via, refOf(via, P_REPO), scratch)
            : arm === 'profiled-seasoned' ? await trial(build, arm, run, rtt, via, refOf(via, P_REPO), scratch, undefined, { image: `${via.host}/${S_REPO}:${DEMO_TAG}`, program: seasoning!.program })
            : arm === 'other-profile' ? await trial(build, arm, run, rtt, via, refOf(via, U_REPO), scratch, async (dir) => {
              await mkdir(path.join(dir, 'profiles'), { recursive: true, mode: 0o700 });
              await copyFile(otherFile, localProfilePath(dir, made.manifestDigest));
            })
            : await trial(build, arm, run, rtt, via, refOf(via, U_REPO), scratch);
          rows.push(row);
          console.log(`| ${rtt} ms | ${build.name} | ${arm} | ${run} | ${s2(row.readyS)} | ${s2(row.totalS)} | ${mb(row.layerBytes)} | ${mb(row.distinctLayerBytes)} | ${row.requests} | ${row.profile} |`);
        }
      }
    }
    const lines: string[] = [];
    const goals: string[] = [];
    const label = (build: string, arm: string): string => (BUILDS.length > 1 ? `${build}: ${arm}` : arm);
    for (const rtt of RTTS) for (const build of BUILDS) {
      const of = (arm: Arm): Row[] => rows.filter((r) => r.arm === arm && r.rtt === rtt && r.build === build.name);
      const at = `${rtt} ms RTT${BUILDS.length > 1 ? `, ${build.name}` : ''}`;
      for (const arm of ARMS) {
        const rs = of(arm);
        lines.push(`| ${rtt} ms | ${label(build.name, arm)} | ${rs.length} | ${spread(rs.map((r) => r.readyS), s2)} | ${spread(rs.map((r) => r.totalS), s2)} | ${spread(rs.map((r) => r.totalS - r.readyS), s2)} | ${spread(rs.map((r) => r.layerBytes), mb)} | ${mb(median(rs.map((r) => r.distinctLayerBytes)))} | ${median(rs.map((r) => r.requests))} |`);
      }
      const warm = median(of('warm').map((r) => r.totalS));
      const limit = warm + need.interpolated / (RATE_MB * 1e6) + (3 * rtt) / 1000;
      const servedWarm = of('warm-served').length ? median(of('warm-served').map((r) => r.totalS)) : warm;
      const servedLimit = servedWarm + need.interpolated / (RATE_MB * 1e6) + (3 * rtt) / 1000;
      const servedT = median(of('profiled-served').map((r) => r.totalS));
      const prof = of('profiled');
      const profT = median(prof.map((r) => r.totalS));
      const profB = median(prof.map((r) => r.layerBytes));
      const unprofT = median(of('unprofiled').map((r) => r.totalS));
      const otherT = median(of('other-profile').map((r) => r.totalS));
      const perRound = (a: Arm, b: Arm | number): string => of(a).map((r) => {
        const base = typeof b === 'number' ? b : of(b).find((x) => x.run === r.run)?.totalS;
        return base ? (r.totalS / base).toFixed(2) : '-';
      }).join(', ');
      goals.push(
        `- ${at}: profiled layer bytes ${mb(profB)} = **${(profB / need.interpolated).toFixed(2)}x** the needed compressed bytes (interpolated ${mb(need.interpolated)}; ${(profB / need.bounded).toFixed(2)}x the checkpoint-bounded ${mb(need.bounded)}); goal ≤ 1.5x.`,
        `- ${at}: profiled time ${s2(profT)} = **${(profT / limit).toFixed(2)}x** the physical limit ${s2(limit)} (warm ${s2(warm)} + ${mb(need.interpolated)} at ${RATE_MB} MB/s + 3 x ${rtt} ms; per round ${perRound('profiled', limit)}); goal ≤ 1.5x. Unprofiled / profiled: ${(unprofT / profT).toFixed(2)}x (per round ${of('unprofiled').map((u) => { const p = prof.find((x) => x.run === u.run); return p ? (u.totalS / p.totalS).toFixed(2) : '-'; }).join(', ')}).`,
        `- ${at}: from the mount ready to the end of python (the part a profile can shorten; ready time does not depend on it): profiled ${s2(median(prof.map((r) => r.totalS - r.readyS)))}, unprofiled ${s2(median(of('unprofiled').map((r) => r.totalS - r.readyS)))}, warm ${s2(median(of('warm').map((r) => r.totalS - r.readyS)))}; unprofiled / profiled per round ${of('unprofiled').map((u) => { const p = prof.find((x) => x.run === u.run); return p ? ((u.totalS - u.readyS) / (p.totalS - p.readyS)).toFixed(2) : '-'; }).join(', ')}.`,
        `- ${at}: with the node's server kept running: profiled ${s2(servedT)} = **${(servedT / servedLimit).toFixed(2)}x** the physical limit ${s2(servedLimit)} (${of('warm-served').length ? 'warm-served' : 'warm'} ${s2(servedWarm)} + ${mb(need.interpolated)} at ${RATE_MB} MB/s + 3 x ${rtt} ms; per round ${perRound('profiled-served', servedLimit)})${of('warm').length ? `, ${(servedT / limit).toFixed(2)}x the limit from the warm arm (${s2(limit)})` : ''}; unprofiled ${of('unprofiled-served').length ? s2(median(of('unprofiled-served').map((r) => r.totalS))) : 'not run'}; ready ${s2(median(of('profiled-served').map((r) => r.readyS)))} profiled, ${s2(median(of('warm-served').map((r) => r.readyS)))} warm-served, ${prof.length ? `${s2(median(of('warm').map((r) => r.readyS)))} warm. Profiled, server kept running / not: ${(profT / servedT).toFixed(2)}x faster.` : 'no unserved arm run.'}`,
        `- ${at}: on a kept server that served another image's cold mount first: profiled-seasoned ${s2(median(of('profiled-seasoned').map((r) => r.totalS)))} = **${(median(of('profiled-seasoned').map((r) => r.totalS)) / servedLimit).toFixed(2)}x** the physical limit ${s2(servedLimit)}; ready ${s2(median(of('profiled-seasoned').map((r) => r.readyS)))}; profiled-served / profiled-seasoned per round ${perRound('profiled-served', 'profiled-seasoned')}.`,
        `- ${at}: another workload's profile / unprofiled: **${(otherT / unprofT).toFixed(2)}x** (per round ${perRound('other-profile', 'unprofiled')}); goal ≤ 2x.`,
      );
    }
    if (BUILDS.length > 1) {
      for (const rtt of RTTS) {
        const prof = (b: string): Row[] => rows.filter((r) => r.arm === 'profiled' && r.rtt === rtt && r.build === b);
        const after = prof('this build');
        for (const other of BUILDS.slice(1)) {
          const before = prof(other.name);
          if (!after.length || !before.length) continue;
          const per = after.map((a) => { const b = before.find((x) => x.run === a.run); return b ? (b.totalS / a.totalS).toFixed(2) : '-'; }).join(', ');
          goals.push(`- ${rtt} ms RTT: profiled, mount to end of python, ${other.name} / this build: **${(median(before.map((r) => r.totalS)) / median(after.map((r) => r.totalS))).toFixed(2)}x** (${s2(median(before.map((r) => r.totalS)))} vs ${s2(median(after.map((r) => r.totalS)))}; per round ${per}).`);
        }
      }
    }
    const figures = [
      `Command: \`node --import tsx bench/index/profiled-mount.ts\`${process.env.RUNS ? ` (RUNS=${RUNS})` : ''}${process.env.RTTS ? ` (RTTS=${process.env.RTTS})` : ''}${process.env.BASE ? ` (BASE=a checkout of main, built)` : ''}${process.env.VARIANTS ? ` (VARIANTS="${process.env.VARIANTS}")` : ''}${process.env.ARMS || BUILDS.length > 1 ? ` (ARMS=${ARMS.join(',')})` : ''}${INDEX_ARGS.length ? ` (INDEX_ARGS="${INDEX_ARGS.join(' ')}")` : ''} (as root, after \`npm run build\`)`,
      `Date: ${date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${uptimeBefore}\`; after: \`${(await sh('uptime', [])).trim()}\`.`,
      `Proxy: ${RATE_MB} MB/s shared by all responses; RTT ${RTTS.join(' and ')} ms. Runs: ${RUNS} rounds, arms in rotating order, each from an empty cache directory with the page cache dropped.`,
      '',
      `Image: ${describeImage(img)}`,
      '',
      `Python profile (\`clip profile REF --push -- ${PROGRAM.join(' ')}\`, ${s2(profileS)} through the ${RTTS[0]} ms proxy): ${made.ranges} ranges, ${mb(made.bytesRead)} uncompressed (what the kernel asked of the mount, readahead included), ${made.profileBytes} bytes of profile. `
        + `Needed compressed bytes: ${mb(need.interpolated)} interpolated between checkpoints, ${mb(need.bounded)} from the checkpoint before to the one after each range (${mb(need.uncompressed)} uncompressed after merging). Other workload (\`${OTHER.join(' ')}\`): ${other.ranges.length} ranges, ${[...other.learned.values()].reduce((n, l) => n + l.length, 0)} learned checkpoints. The python profile carries ${learnedDesc}.`,
      '',
      '| RTT | arm | runs | ready: median (min to max) | mount to end of python: median (min to max) | ready to end of python | layer bytes served | distinct layer bytes (median) | requests (median) |',
      '|---|---|---|---|---|---|---|---|---|',
      ...lines,
      '',
      ...goals.filter((l) => !l.includes('NaN')), // arms not run (ARMS) give no figure
      '',
      'Every trial:',
      '',
      '| RTT | arm | run | ready | end of python | layer bytes | distinct layer bytes | requests | profile (from the mount\'s log) |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.rtt} ms | ${label(r.build, r.arm)} | ${r.run} | ${s2(r.readyS)} | ${s2(r.totalS)} | ${mb(r.layerBytes)} | ${mb(r.distinctLayerBytes)} | ${r.requests} | ${r.profile} |`),
    ].join('\n');
    console.log(`\n${figures}`);
    if (process.env.WRITE !== '0') {
      const old = await readFile(RESULTS, 'utf8');
      if (!old.includes(BEGIN)) {
        const { writeFile } = await import('node:fs/promises');
        await writeFile(RESULTS, `${old.trimEnd()}\n\n${INDEX_ARGS.length ? `### The same with \`clip index ${INDEX_ARGS.join(' ')}\`` : process.env.BASE ? '### This build against main, interleaved (BASE)' : '## Cold start with a startup profile (issue 12, item 1)'}\n\n\`\`\`\n${INDEX_ARGS.length ? `INDEX_ARGS="${INDEX_ARGS.join(' ')}" ` : ''}${process.env.BASE ? 'BASE=DIR ' : ''}node --import tsx bench/index/profiled-mount.ts        # RUNS=3 RATE_MB=100 RTTS=0,25\n\`\`\`\n\n${BEGIN}\n${END}\n`);
      }
      await writeBetweenMarkers(RESULTS, { begin: BEGIN, end: END, fresh: '' }, figures);
      console.log(`written to ${RESULTS}`);
    }
  } finally {
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
