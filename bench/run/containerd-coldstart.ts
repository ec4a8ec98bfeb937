/**
 * Running a container from nothing cached, three ways (issue 11; run by hand, as root, after `npm run build`):
 *   RUNS=5 RTTS=0,25 node --import tsx bench/run/containerd-coldstart.ts      (RATE_MB=100)
 * The debian-python image (bench/images/debian-python.ts: debootstrap minbase + apt python3, two gzip
 * layers, Cmd python3) is pushed to a real registry (docker-registry 2.8) behind the throttle proxy of
 * bench/coldstart (RATE_MB MB/s shared by all responses, RTT ms added to every request and once more
 * to a new connection's first), one proxy per RTT in RTTS, their trials interleaved in each round.
 * `clip index REF --push` publishes its index
 * once. Then RUNS rounds; in each, the three arms in rotating order, each from nothing
 * cached (a new containerd with an empty root and state, a new snapshotter root and clip cache
 * directory, the page cache dropped after the daemons started), timed to the end of
 * `python3 -c 'import json'`:
 *   overlayfs:   `ctr images pull --plain-http REF` + `ctr run --rm REF ID python3 -c 'import json'`
 *                (containerd's default snapshotter, overlayfs)
 *   snapshotter: `ctr-remote images rpull --plain-http --snapshotter clip REF` +
 *                `ctr run --rm --snapshotter clip REF ID python3 -c 'import json'`, with
 *                `clip snapshotter` (dist/) as containerd's proxy plugin
 *   clip-run:    `clip run REF --cache-dir EMPTY -- python3 -c 'import json'`; no clip server runs
 *                before the clock: `clip run` starts it (two Node start-ups) while it resolves the image
 *   clip-run (server up): the same, with the node's clip server of that (empty) cache directory
 *                started before the clock and held up, as on a node where it runs as a daemon
 *                before any container (as containerd and the snapshotter do in the other arms)
 *   snapshotter (profiled), clip-run (profiled), clip-run (server up, profiled): the same, of the same image pushed to a second
 *                repository whose startup profile was pushed before the timed runs
 *                (`clip profile --push REF -- python3 -c 'import json'`, as a converter would): the
 *                image mount finds it among the image's referrers and prefetches its ranges.
 * containerd (Debian's 1.6) and the snapshotter are started before the clock starts, as a node's
 * daemons would be running; the snapshotter starts the node's clip server (the mount daemon) when
 * it starts. For clip-run no server runs before the clock (`clip run` starts it); for the
 * "server up" arms it does, with nothing in its cache directory.
 * After each cold trial the same command runs once more, warm (image present, caches and page cache
 * warm): the fixed cost of each path. For overlayfs that is `ctr run` of a pulled, unpacked image.
 * The snapshotter keeps a pulled image mounted and `clip run` lets the mount linger (since session
 * 6, so in the "before" builds of main too), so their warm rerun joins the mount.
 * Prints a table and writes the figures into bench/run/RESULTS.md (between markers per RTT).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pushLayout } from '../../src/oci/push.js';
import { serverFiles } from '../../src/server/paths.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { startContainerd, type TestContainerd } from '../../test/snapshotter/containerd.js';
import { clip, linkSettings, median, seconds, sh, syncAndDrop, writeBetweenMarkers } from '../coldstart/coldstart.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage, type DebianPythonImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-containerd-coldstart');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 5);
/**
 * Several RTTs per invocation, each through its own proxy: `clip run` reads the layers through the
 * repository it resolved (REF's proxy), not through the one that published the index (which was
 * the case when this bench took one RTT per invocation; see RESULTS.md).
 */
const { rateMb: RATE_MB, rtts: RTTS } = linkSettings('0');
const REPOSITORY = 'bench/debian-python';
/** The same image in a repository of its own, with a startup profile pushed (the profiled arms). */
const PROFILED_REPOSITORY = 'bench/debian-python-profiled';
const PROGRAM = ['python3', '-c', 'import json'];

/**
 * BASELINE_CLI=PATH/dist/cli/main.js adds the snapshotter and clip-run arms of another build (the
 * "before" of a change), interleaved with this build's in every round, so both face the same load.
 */
const BASELINE_CLI = process.env.BASELINE_CLI;
type Arm = 'overlayfs' | 'snapshotter' | 'clip-run' | 'clip-run (server up)' | 'snapshotter (profiled)' | 'clip-run (profiled)' | 'clip-run (server up, profiled)'
  | 'snapshotter (before)' | 'clip-run (before)' | 'clip-run (server up, before)';
const ALL_ARMS: Arm[] = [
  'overlayfs', 'snapshotter', 'clip-run', 'clip-run (server up)', 'snapshotter (profiled)', 'clip-run (profiled)', 'clip-run (server up, profiled)',
  ...(BASELINE_CLI ? ['snapshotter (before)', 'clip-run (before)', 'clip-run (server up, before)'] as const : []),
];
/** ONLY=arm,arm: just those arms (for a look at one path with VERBOSE=1 WRITE=0; ratios need overlayfs). */
const ARMS: Arm[] = process.env.ONLY ? ALL_ARMS.filter((a) => process.env.ONLY!.split(/,(?![^(]*\))/).map((x) => x.trim()).includes(a)) : ALL_ARMS;
/** The clip CLI an arm runs. */
const isBefore = (arm: Arm): boolean => arm.endsWith('before)');
const cliOf = (arm: Arm): string => (isBefore(arm) ? BASELINE_CLI! : CLI);
const isProfiled = (arm: Arm): boolean => arm.endsWith('profiled)');
const clipWith = (cli: string, ...args: string[]): Promise<string> => sh(process.execPath, [cli, ...args]);

interface Row {
  arm: Arm;
  run: number;
  rtt: number;
  /** Clock start to the end of python. */
  totalS: number;
  /** overlayfs / snapshotter: the pull command returned. */
  pullS?: number;
  /** Proxy: first request started, last response ended (s since the clock started). */
  firstRequestS: number;
  lastByteS: number;
  /** The image mount answered its first request (clip's server log), s since the clock started. */
  mountReadyS?: number;
  /** The node's clip server (holder) was started, s since the clock started. */
  serverStartS?: number;
  bytes: number;
  layerBytes: number;
  requests: number;
  /** The same command once more, warm. */
  warmS: number;
}

const s2 = (x: number): string => `${x.toFixed(2)} s`;
const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`;
const opt = (x: number | undefined): string => (x === undefined ? '-' : s2(x));
const spread = (xs: number[], f: (x: number) => string): string => (xs.length ? `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})` : '-');

/** `clip snapshotter` from dist/ (what a node runs), its log in `logFile`; resolves once it serves. */
async function startSnapshotter(cli: string, root: string, cacheDir: string, socket: string, logFile: string): Promise<{ stop(): Promise<void> }> {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [cli, 'snapshotter', '--address', socket, '--root', root, '--cache-dir', cacheDir, '--log-level', 'info', '--log-format', 'json'], { stdio: ['ignore', 'pipe', fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('serving on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`clip snapshotter exited (${code}): ${readFileSync(logFile, 'utf8').slice(-3000)}`)));
  });
  return {
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Wait until the node's clip server of `cacheDir` has ended (it does 5 s after its last mount). */
async function waitServerGone(cacheDir: string): Promise<void> {
  const lock = serverFiles(cacheDir).lock;
  for (let i = 0; i < 300; i++) {
    let pid: number;
    try {
      pid = Number(readFileSync(lock, 'utf8').split('\n')[0]);
    } catch {
      return;
    }
    if (!pid || !existsSync(`/proc/${pid}`)) return;
    await sleep(100);
  }
  throw new Error(`the clip server of ${cacheDir} did not end within 30 s`);
}

/**
 * From the server's JSON log: when the holder started and when the first mount was served
 * (epoch ms), if it says so. Lines carry `time` (epoch ms) and `msg`.
 */
async function serverTimes(cacheDir: string): Promise<{ start?: number; ready?: number; msgs: string[] }> {
  const text = await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { time?: number | string; msg?: string });
  const at = (l: { time?: number | string }): number | undefined => (typeof l.time === 'number' ? l.time : l.time ? Date.parse(l.time) : undefined);
  const start = lines.length ? at(lines[0]!) : undefined;
  const ready = lines.find((l) => /serving|mounted/i.test(l.msg ?? ''));
  return { ...(start !== undefined ? { start } : {}), ...(ready && at(ready) !== undefined ? { ready: at(ready)! } : {}), msgs: lines.map((l) => `${at(l) ?? '?'} ${l.msg ?? ''}`) };
}

function proxyFigures(served: readonly ServedRequest[], layers: Set<string>): Pick<Row, 'bytes' | 'layerBytes' | 'requests' | 'firstRequestS' | 'lastByteS'> {
  let bytes = 0;
  let layerBytes = 0;
  for (const r of served) {
    bytes += r.bytes;
    if (layers.has(/\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path)?.[1] ?? '')) layerBytes += r.bytes;
  }
  return {
    bytes, layerBytes, requests: served.length,
    firstRequestS: served.length ? Math.min(...served.map((r) => r.startMs)) / 1000 : NaN,
    lastByteS: served.length ? Math.max(...served.map((r) => r.endMs ?? r.startMs)) / 1000 : NaN,
  };
}

/** VERBOSE: every request, s since the clock started. */
const requestLines = (served: readonly ServedRequest[]): string =>
  served.map((r) => `    ${(r.startMs / 1000).toFixed(3)}-${((r.endMs ?? 0) / 1000).toFixed(3)} ${r.method} ${r.path.slice(-30)} ${r.range ?? ''} ${r.bytes}`).join('\n');

let containers = 0;
/** Trials that failed (and were run again), by arm. */
let failures = 0;
const failed: string[] = [];
const nextId = (): string => `bench-${process.pid}-${++containers}`;

async function overlayfsTrial(_arm: Arm, run: number, rtt: number, proxy: ThrottleProxy, ref: string, scratch: string, layers: Set<string>): Promise<Row> {
  process.env.TMPDIR = scratch; // containerd's root and state on the disk the other arms' caches are on
  const ctrd: TestContainerd = await startContainerd(path.join(scratch, 'no-snapshotter.sock'));
  try {
    await syncAndDrop();
    proxy.reset();
    const t0 = performance.now();
    await ctrd.ctr('images', 'pull', '--plain-http', ref);
    const pullS = seconds(t0);
    await ctrd.ctr('run', '--rm', ref, nextId(), ...PROGRAM);
    const totalS = seconds(t0);
    const served = [...proxy.served];
    const w0 = performance.now();
    await ctrd.ctr('run', '--rm', ref, nextId(), ...PROGRAM);
    const warmS = seconds(w0);
    return { arm: 'overlayfs', run, rtt, totalS, pullS, warmS, ...proxyFigures(served, layers) };
  } finally {
    await ctrd.stop();
  }
}

async function snapshotterTrial(arm: Arm, run: number, rtt: number, proxy: ThrottleProxy, ref: string, scratch: string, layers: Set<string>): Promise<Row> {
  const dir = await mkdtemp(path.join(scratch, 'snapshotter-'));
  const cacheDir = path.join(dir, 'cache');
  const socket = path.join(dir, 'clip.sock');
  const cli = cliOf(arm);
  const sn = await startSnapshotter(cli, path.join(dir, 'root'), cacheDir, socket, path.join(dir, 'snapshotter.log'));
  process.env.TMPDIR = scratch;
  let ctrd: TestContainerd | undefined;
  try {
    ctrd = await startContainerd(socket);
    await syncAndDrop();
    proxy.reset();
    const epoch0 = Date.now();
    const t0 = performance.now();
    await ctrd.ctrRemote('images', 'rpull', '--plain-http', '--snapshotter', 'clip', ref);
    const pullS = seconds(t0);
    await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', ref, nextId(), ...PROGRAM);
    const totalS = seconds(t0);
    const served = [...proxy.served];
    const times = await serverTimes(cacheDir);
    const w0 = performance.now();
    await ctrd.ctr('run', '--rm', '--snapshotter', 'clip', ref, nextId(), ...PROGRAM);
    const warmS = seconds(w0);
    if (process.env.VERBOSE) {
      console.log(times.msgs.map((m) => `    ${((Number(m.split(' ')[0]) - epoch0) / 1000).toFixed(3)} ${m.split(' ').slice(1).join(' ')}`).join('\n'));
      console.log(requestLines(served));
      const log = await readFile(path.join(dir, 'snapshotter.log'), 'utf8');
      console.log(log.split('\n').filter(Boolean).map((l) => { const j = JSON.parse(l) as { time: number; msg: string }; return `    sn ${((j.time - epoch0) / 1000).toFixed(3)} ${j.msg}`; }).join('\n'));
    }
    return {
      arm, run, rtt, totalS, pullS, warmS, ...proxyFigures(served, layers),
      ...(times.start !== undefined ? { serverStartS: (times.start - epoch0) / 1000 } : {}),
      ...(times.ready !== undefined ? { mountReadyS: (times.ready - epoch0) / 1000 } : {}),
    };
  } catch (err) {
    // Kept for the report: the snapshotter's and the server's logs of a failed trial.
    const keep = path.join(WORK, `failed-${process.pid}-${++failures}`);
    await mkdir(keep, { recursive: true });
    await writeFile(path.join(keep, 'error.txt'), String((err as Error).stack ?? err));
    await writeFile(path.join(keep, 'snapshotter.log'), await readFile(path.join(dir, 'snapshotter.log'), 'utf8').catch(() => ''));
    await writeFile(path.join(keep, 'server.log'), await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => ''));
    await writeFile(path.join(keep, 'containerd.log'), ctrd?.logs() ?? '');
    throw err;
  } finally {
    await ctrd?.ctr('images', 'rm', '--sync', ref).catch(() => undefined);
    await ctrd?.stop();
    await sn.stop();
    // The snapshotter leaves its image mounts to the server on purpose (they outlive it): unmount them.
    const info = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dir));
    for (const mp of info.sort().reverse()) await clipWith(cli, 'unmount', mp, '--cache-dir', cacheDir).catch(() => sh('umount', ['-l', mp]).catch(() => undefined));
    await waitServerGone(cacheDir);
    await rm(dir, { recursive: true, force: true });
  }
}

async function clipRunTrial(arm: Arm, run: number, rtt: number, proxy: ThrottleProxy, ref: string, scratch: string, layers: Set<string>): Promise<Row> {
  const cacheDir = await mkdtemp(path.join(scratch, 'clip-run-'));
  const cli = cliOf(arm);
  let release: (() => void) | undefined;
  try {
    if (arm.includes('server up')) release = await serverUp(cli, cacheDir);
    await syncAndDrop();
    proxy.reset();
    const epoch0 = Date.now();
    const t0 = performance.now();
    await clipWith(cli, 'run', ref, '--cache-dir', cacheDir, '--', ...PROGRAM);
    const totalS = seconds(t0);
    const served = [...proxy.served];
    const times = await serverTimes(cacheDir);
    const w0 = performance.now();
    await clipWith(cli, 'run', ref, '--cache-dir', cacheDir, '--', ...PROGRAM);
    const warmS = seconds(w0);
    if (process.env.VERBOSE) {
      console.log(times.msgs.map((m) => `    ${((Number(m.split(' ')[0]) - epoch0) / 1000).toFixed(3)} ${m.split(' ').slice(1).join(' ')}`).join('\n'));
      console.log(requestLines(served));
    }
    return {
      arm, run, rtt, totalS, warmS, ...proxyFigures(served, layers),
      ...(times.start !== undefined ? { serverStartS: (times.start - epoch0) / 1000 } : {}),
      ...(times.ready !== undefined ? { mountReadyS: (times.ready - epoch0) / 1000 } : {}),
    };
  } finally {
    release?.();
    // The mount lingers after the warm run: stopped here.
    await clipWith(cli, 'run', '--cleanup', '--cache-dir', cacheDir).catch(() => undefined);
    await waitServerGone(cacheDir);
    await rm(cacheDir, { recursive: true, force: true });
  }
}

/**
 * The node's clip server of `cacheDir` started (from the build of `cli`, as a node's daemon would
 * run it) and held up, as the snapshotter holds it, until the returned function is called. The
 * cache directory holds nothing else: no index, no layer. Started from a plain `node` (not this
 * process, whose tsx flags its server would inherit).
 */
async function serverUp(cli: string, cacheDir: string): Promise<() => void> {
  // A module file, not `node -e`: the holder it starts inherits this process's node flags.
  const client = pathToFileURL(path.join(path.dirname(cli), '../server/client.js')).href;
  const script = path.join(path.dirname(cacheDir), `server-up-${path.basename(cacheDir)}.mjs`);
  await writeFile(script, `const m = await import(${JSON.stringify(client)});\nawait m.ensureServer(process.argv[2]);\nm.holdServer(process.argv[2]);\nprocess.stdout.write('up\\n');\n`);
  const child = spawn(process.execPath, [script, cacheDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('up') && resolve());
      child.once('exit', (code) => reject(new Error(`starting the clip server of ${cacheDir} failed (exit ${code})`)));
    });
  } finally {
    await rm(script, { force: true });
  }
  return () => child.kill('SIGTERM');
}

function rowLine(r: Row): string {
  return `| ${r.rtt} ms | ${r.arm} | ${r.run} | ${s2(r.totalS)} | ${opt(r.pullS)} | ${r.pullS !== undefined ? s2(r.totalS - r.pullS) : '-'} | ${opt(r.serverStartS)} | ${opt(r.mountReadyS)} | ${s2(r.firstRequestS)} | ${s2(r.lastByteS)} | ${mb(r.bytes)} | ${mb(r.layerBytes)} | ${r.requests} | ${s2(r.warmS)} |`;
}

function report(rtt: number, rows: Row[], img: DebianPythonImage, ctx: { command: string; date: string; uptimeBefore: string; uptimeAfter: string; publishS: number; failed: string[] }): string {
  const of = (arm: Arm): Row[] => rows.filter((r) => r.arm === arm);
  const med = (arm: Arm, f: (r: Row) => number | undefined): number => median(of(arm).map(f).filter((x): x is number => x !== undefined));
  const ratio = (arm: Arm): string => {
    const base = of('overlayfs');
    const pairs = of(arm).map((r) => base.find((b) => b.run === r.run)).map((b, i) => (b ? (b.totalS / of(arm)[i]!.totalS).toFixed(2) : '-'));
    return `**${(med('overlayfs', (r) => r.totalS) / med(arm, (r) => r.totalS)).toFixed(2)}x** (per round: ${pairs.join(', ')})`;
  };
  const summary = ARMS.map((arm) => {
    const rs = of(arm);
    const opts = (f: (r: Row) => number | undefined): string => spread(rs.map(f).filter((x): x is number => x !== undefined), s2);
    return `| ${arm} | ${rs.length} | ${spread(rs.map((r) => r.totalS), s2)} | ${opts((r) => r.pullS)} | ${opts((r) => (r.pullS !== undefined ? r.totalS - r.pullS : undefined))} | ${opts((r) => r.mountReadyS)} | ${spread(rs.map((r) => r.bytes), mb)} (${((100 * med(arm, (r) => r.bytes)) / img.compressedBytes).toFixed(1)} % of the image) | ${spread(rs.map((r) => r.warmS), s2)} |`;
  });
  return [
    `Command: \`${ctx.command}\` (as root, after \`npm run build\`)`,
    `Date: ${ctx.date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${ctx.uptimeBefore}\`; after: \`${ctx.uptimeAfter}\`.`,
    `Proxy: ${RATE_MB} MB/s (10^6 bytes) shared by all responses, ${rtt} ms round-trip time added per request (and once more for a new connection's first). Registry: docker-registry 2.8. containerd ${'1.6.20 (Debian)'}, runc (Debian), ctr-remote (Debian's stargz-snapshotter).`,
    `Its index was published once (\`clip index REF --push\`, ${ctx.publishS.toFixed(1)} s through the proxy), not part of any trial.`,
    `Runs: ${rows.length / ARMS.length} rounds, the ${ARMS.length} arms in rotating order in each${BASELINE_CLI ? ` ("before": the build at ${BASELINE_CLI})` : ''}; every trial from nothing cached (new containerd root and state, new snapshotter root and clip cache directory, page cache dropped once the daemons were up).`,
    '',
    `Image: ${describeImage(img)}`,
    '',
    '| arm | runs | to the end of python: median (min–max) | pull command | run command | image mount ready (server log) | bytes the proxy served | warm rerun |',
    '|---|---|---|---|---|---|---|---|',
    ...summary,
    '',
    `- ${ARMS.slice(1).map((arm) => `overlayfs / ${arm}: ${ratio(arm)}`).join('; ')}. Goal: ≥ 8x.`,
    `- Trials that failed and were run again (every RTT of this invocation): ${ctx.failed.length ? ctx.failed.map((f) => `\`${f}\``).join('; ') : 'none'}.`,
    '',
    'Every trial (times in s since the clock started; "server listening": the node\'s clip server\'s first log line; "mount ready": its "fuse: serving" line for the image mount; first request / last byte: at the proxy):',
    '',
    '| RTT | arm | run | total | pull | run command | server listening | mount ready | first request | last byte | bytes served | layer bytes | requests | warm rerun |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(rowLine),
  ].join('\n');
}

const HEADING = `# Running a container from nothing cached: containerd's overlayfs vs the clip snapshotter vs \`clip run\`

\`\`\`
RUNS=5 RTTS=0,25 node --import tsx bench/run/containerd-coldstart.ts     # RATE_MB=100 by default
\`\`\`
`;

async function writeResults(rtt: number, figures: string): Promise<void> {
  const begin = `<!-- containerd-coldstart rtt=${rtt}:begin (written by containerd-coldstart.ts) -->`;
  const end = `<!-- containerd-coldstart rtt=${rtt}:end -->`;
  const old = existsSync(RESULTS) ? await readFile(RESULTS, 'utf8') : HEADING;
  if (!old.includes(begin)) await writeFile(RESULTS, `${old.trimEnd()}\n\n## ${rtt} ms round-trip time\n\n${begin}\n${end}\n`);
  await writeBetweenMarkers(RESULTS, { begin, end, fresh: '' }, figures);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (containerd, mounts, drop_caches)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const date = new Date().toISOString();
  const uptimeBefore = (await sh('uptime', [])).trim();
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  console.log(`image ${img.reused ? 'reused' : 'built'}: ${describeImage(img)}`);
  const layers = new Set(img.layers.map((l) => l.digest));

  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  const proxies = new Map<number, ThrottleProxy>();
  const savedTmp = process.env.TMPDIR;
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPOSITORY}:${img.tag}`);
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${PROFILED_REPOSITORY}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const refVia = (p: ThrottleProxy, arm?: Arm): string => `${p.host}/${(arm !== undefined && isProfiled(arm)) ? PROFILED_REPOSITORY : REPOSITORY}:${img.tag}`;
    const first = proxies.get(RTTS[0]!)!;
    const t0 = performance.now();
    const out = JSON.parse(await clip('index', refVia(first), '--push', '--cache-dir', path.join(scratch, 'publisher'), '--json', '--no-progress')) as { published: string | null };
    const publishS = seconds(t0);
    if (!out.published) throw new Error('clip index --push printed no artifact');
    await rm(path.join(scratch, 'publisher'), { recursive: true, force: true });
    console.log(`published in ${publishS.toFixed(1)} s: ${out.published}`);
    if (ARMS.some(isProfiled)) {
      // The profiled repository: its index, then a startup profile recorded by one run of the
      // program and pushed next to it (what a converter would do once per image).
      const profiled = refVia(first, 'clip-run (profiled)');
      const publisher = path.join(scratch, 'profiler');
      const indexed = JSON.parse(await clip('index', profiled, '--push', '--cache-dir', publisher, '--json', '--no-progress')) as { published: string | null };
      if (!indexed.published) throw new Error(`clip index --push of ${profiled} printed no artifact`);
      const p0 = performance.now();
      await clip('profile', profiled, '--push', '--cache-dir', publisher, '--', ...PROGRAM);
      console.log(`profile of ${profiled} recorded and pushed in ${seconds(p0).toFixed(1)} s`);
      await clip('run', '--cleanup', '--cache-dir', publisher).catch(() => undefined);
      await waitServerGone(publisher);
      await rm(publisher, { recursive: true, force: true });
    }

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const [rtt, proxy] of proxies) {
        const order = ARMS.map((_, i) => ARMS[(i + run - 1) % ARMS.length]!);
        for (const arm of order) {
          const trial = arm === 'overlayfs' ? overlayfsTrial : arm.startsWith('snapshotter') ? snapshotterTrial : clipRunTrial;
          let row: Row | undefined;
          for (let attempt = 1; !row; attempt++) {
            try {
              row = await trial(arm, run, rtt, proxy, refVia(proxy, arm), scratch, layers);
            } catch (err) {
              // A failed trial is reported, and run again (up to 7 times).
              failed.push(`${arm}, round ${run}, ${rtt} ms: ${(err as Error).message.split('\n')[0]!.replace(/^.* failed: /, '')}`);
              console.log(`FAILED ${failed.at(-1)}`);
              if (attempt >= 8) throw err;
            }
          }
          rows.push(row);
          console.log(rowLine(row));
        }
      }
    }
    const uptimeAfter = (await sh('uptime', [])).trim();
    for (const rtt of RTTS) {
      const figures = report(rtt, rows.filter((r) => r.rtt === rtt), img, {
        command: ['RUNS', 'RATE_MB', 'RTTS', 'BASELINE_CLI'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('') + 'node --import tsx bench/run/containerd-coldstart.ts',
        date, uptimeBefore, uptimeAfter, publishS, failed,
      });
      console.log(`\n${figures}`);
      if (process.env.WRITE !== '0') await writeResults(rtt, figures);
    }
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
