/**
 * Where a profiled cold start spends its time against the warm start (issue 12), run by hand as
 * root after `npm run build`:
 *   node --import tsx bench/index/trace-start.ts        RUNS=2 RATE_MB=100 RTTS=0,25
 * The debian-python image is pushed with its index and a python profile published (as
 * profiled-mount.ts does). Per RTT and round, two arms in turn, each from a fresh cache directory
 * and a dropped page cache: 'cold' (an empty node: the profile is found in the registry) and 'warm'
 * (a cache directory a run before filled; the node's server still up from it, as in
 * profiled-mount.ts's warm arm); 'served' (ARMS=cold,served,warm): 'cold' on a node whose server
 * runs already (`clip server start` before the clock starts, and its CPU quiet: it prepares for mounts once started). Each trial is timed from `clip mount --background` to the end of
 * `chroot MNT python3 -c 'import json'`, and its events are put on one clock: the CLI's own log
 * (--log-level debug: each registry request it makes), the proxy's log (each request's start, end
 * and bytes), the server's log (every message), and python's execve, first and last openat and exit
 * (strace -ttt). The server's CPU time over the trial comes from /proc (its main thread's apart);
 * PERF=1 also samples the server with `perf record -g` into .tmp/bench-trace-start/. Prints one timeline per
 * trial and a median table of the phases; writes nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushLayout } from '../../src/oci/push.js';
import { serverFiles } from '../../src/server/paths.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { cpuQuiet, linkSettings, median, sh, syncAndDrop, variantsFromEnv } from '../coldstart/coldstart.js';
import { startThrottleProxy, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-trace-start');
const CLI = process.env.CLI ?? path.join(REPO_ROOT, 'dist/cli/main.js');
/**
 * The builds traced in turn, each round: this one, BASE=DIR[,DIR2]'s (built checkouts, named by their directory), and
 * VARIANTS="name:K=V,K2=V2;..." (this build with those variables: a value may hold spaces and '=').
 */
interface Build { name: string; cli: string; env: Record<string, string> }
const BUILDS: Build[] = [
  { name: 'this', cli: CLI, env: {} },
  ...(process.env.BASE ?? '').split(',').filter(Boolean).map((dir) => ({ name: path.basename(dir), cli: path.join(path.resolve(dir), 'dist/cli/main.js'), env: {} })),
  ...variantsFromEnv().map(({ name, env }) => ({ name, cli: CLI, env })),
];
const RUNS = Number(process.env.RUNS ?? 2);
const { rateMb: RATE_MB, rtts: RTTS } = linkSettings('0,25');
const PROGRAM = ['python3', '-c', 'import json'];
const REPO = 'bench/trace';

interface Event { name: string; at: number; end?: number; note?: string }
interface Trace { build: string; arm: string; rtt: number; run: number; readyMs: number; totalMs: number; serverCpuMs?: number; threadCpuMs?: Map<string, number>; events: Event[] }

/** stdout and stderr of a command (it must succeed). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ out: string; err: string }> {
  return new Promise((done, fail) => execFile(cmd, args, { env, maxBuffer: 64 << 20 }, (e, out, err) => (e ? fail(new Error(`${cmd} ${args.join(' ')}: ${err || e.message}`)) : done({ out, err }))));
}

async function cpuMs(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** CPU ms of a process's threads: its main thread, and the others summed per thread name (libuv's pool threads share one). */
async function threadCpuMs(pid: number | undefined): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (!pid) return out;
  const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const tid of tids) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (!stat) continue;
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const key = tid === String(pid) ? 'main' : name;
    out.set(key, (out.get(key) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
  }
  return out;
}

function requestName(p: string, method: string, range: string | undefined, bytes: number): string {
  if (p.includes('/manifests/sha256-')) return 'referrers (tag schema)';
  if (p.includes('/referrers/')) return 'referrers API';
  if (p.includes('/manifests/')) return `${method} manifest`;
  if (p.includes('/blobs/')) return range ? `layer range ${(bytes / 1e6).toFixed(2)} MB` : `blob ${Math.round(bytes / 1000)} kB`;
  return `${method} ${p}`;
}

/** The whole machine's CPU use, per 100 ms from now (/proc/stat; 100 %: every core busy), as one event. */
function machineBusy(): { stop(): Event } {
  const read = (): [number, number] => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return [total, total - f[3]! - f[4]!];
  };
  const per: number[] = [];
  let [t0, b0] = read();
  const timer = setInterval(() => {
    const [t, b] = read();
    per.push(t > t0 ? Math.round((100 * (b - b0)) / (t - t0)) : 0);
    [t0, b0] = [t, b];
  }, 100);
  return { stop: () => (clearInterval(timer), { name: 'machine: CPU busy % per 100 ms', at: 0, note: per.join(' ') }) };
}

/** CPU ms of this process and of its children that ended (10 ms ticks). */
function selfCpuMs(): [number, number] {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return [(Number(f[11]) + Number(f[12])) * 10, (Number(f[13]) + Number(f[14])) * 10];
}

/** The registry's process, for its CPU over a trial (the newest docker-registry, started by main()). */
let registryPid: number | undefined;

type Arm = 'cold' | 'served' | 'warm';

async function trace(build: Build, arm: Arm, run0: number, rtt: number, proxy: ThrottleProxy, ref: string, scratch: string): Promise<Trace> {
  const CLI = build.cli;
  const cacheDir = await mkdtemp(path.join(scratch, 'cache-'));
  const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
  const straceOut = path.join(scratch, `strace-${build.name}-${arm}-${rtt}-${run0}`);
  // TRACE_ENV="K=V K2=V2" reaches clip's processes only.
  const env = { ...process.env, ...build.env, CLIP_LOG_LEVEL: 'debug', ...(process.env.TRACE_ENV ? Object.fromEntries(process.env.TRACE_ENV.split(' ').map((kv) => kv.split('=', 2) as [string, string])) : {}) };
  const once = async (): Promise<Trace> => {
    await syncAndDrop();
    proxy.reset();
    const wall0 = performance.timeOrigin + performance.now();
    const uptime0 = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]) * 1000 - (performance.timeOrigin + performance.now() - wall0);
    const logBefore = (await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => '')).length;
    const serverPid = Number(/"server":(\d+)/.exec((await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => '')).split('\n').filter(Boolean).at(-1) ?? '')?.[1]) || undefined;
    const cpu0 = await cpuMs(serverPid);
    const threads0 = await threadCpuMs(serverPid);
    // PERF=1: the server sampled over the trial (perf report -i the file; CLIP_SERVER_V8_FLAGS=... --perf-basic-prof names JS frames).
    const perf = process.env.PERF === '1' && serverPid ? spawn('perf', ['record', '-F', '1999', '-g', '-p', String(serverPid), '-o', `${straceOut}.perf`], { stdio: 'ignore' }) : undefined;
    const busy = machineBusy();
    const self0 = selfCpuMs();
    const reg0 = await cpuMs(registryPid);
    const mounted = await run(process.execPath, [CLI, 'mount', ref, mnt, '--background', '--cache-dir', cacheDir, '--log-level', 'debug'], env);
    const readyMs = performance.timeOrigin + performance.now() - wall0;
    await run('strace', ['-f', '-ttt', '-e', 'trace=execve,openat,exit_group', '-o', straceOut, 'chroot', mnt, ...PROGRAM]);
    const totalMs = performance.timeOrigin + performance.now() - wall0;
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((r) => perf.once('exit', r));
      await run('cp', [`${straceOut}.perf`, path.join(WORK, `perf-${build.name}-${arm}-${rtt}-${run0}.data`)]);
    }
    const self1 = selfCpuMs();
    const reg1 = await cpuMs(registryPid);
    const events: Event[] = [{ name: 'clip mount returns (ready)', at: readyMs }, { name: 'python ends (strace returns)', at: totalMs }, busy.stop(),
      { name: 'bench: CPU ms of this process (the proxy) / of its ended children (the CLI, strace, python) / of the registry', at: 0, note: `${self1[0] - self0[0]} / ${self1[1] - self0[1]} / ${reg1 !== undefined && reg0 !== undefined ? reg1 - reg0 : '-'}` }];
    // The server's and its holder's process start (10 ms ticks since boot), on the trial's clock.
    const started = async (p: number | undefined): Promise<number | undefined> => {
      const stat = p ? await readFile(`/proc/${p}/stat`, 'utf8').catch(() => undefined) : undefined;
      return stat ? Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) * 10 - uptime0 : undefined;
    };
    const log = (await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => '')).slice(logBefore);
    let pid = serverPid;
    for (const line of log.split('\n')) {
      if (!line.startsWith('{')) continue;
      const rec = JSON.parse(line) as { time?: number; msg?: string; server?: number; method?: string; range?: string; url?: string; bytes?: number; ms?: number };
      if (rec.time === undefined || !rec.msg) continue;
      pid ??= rec.server;
      events.push({ name: `server: ${rec.msg}`, at: rec.time - wall0, ...(rec.msg === 'registry request' ? { note: `${rec.method} ${rec.range ?? ''}` } : rec.bytes !== undefined ? { note: `${rec.bytes} B${rec.ms ? ` ${Math.round(rec.ms)} ms` : ''}` } : {}) });
    }
    for (const line of mounted.err.split('\n')) {
      if (!line.startsWith('{')) continue;
      const rec = JSON.parse(line) as { time?: number; msg?: string; url?: string; range?: string };
      if (rec.time !== undefined && rec.msg) events.push({ name: `cli: ${rec.msg}`, at: rec.time - wall0, ...(rec.url ? { note: rec.url.replace(/^.*\/v2\//, '').slice(0, 60) } : {}) });
    }
    for (const r of proxy.served) {
      events.push({ name: `proxy: ${requestName(r.path, r.method, r.range, r.bytes)}`, at: r.startMs, ...(r.endMs !== undefined ? { end: r.endMs } : {}), note: `conn ${r.connection}` });
    }
    const st = (await readFile(straceOut, 'utf8')).split('\n').filter(Boolean).map((l) => {
      const m = /^\d+\s+(\d+\.\d+)\s+(.*)$/.exec(l);
      return m ? { at: Number(m[1]) * 1000 - wall0, text: m[2]! } : undefined;
    }).filter((x) => x !== undefined);
    const execs = st.filter((s) => s.text.startsWith('execve("/usr/bin/python3') || s.text.startsWith('execve("/usr/local/bin/python3') || /execve\("[^"]*python3/.test(s.text));
    const opens = st.filter((s) => s.text.startsWith('openat(') && !s.text.includes('ENOENT'));
    if (execs[0]) events.push({ name: 'python: execve', at: execs[0].at });
    if (opens[0]) events.push({ name: 'python: first openat', at: opens[0].at, note: opens[0].text.slice(0, 60) });
    const last = opens.at(-1);
    if (last) events.push({ name: 'python: last openat', at: last.at, note: `${last.text.slice(0, 60)} (${opens.length} opens)` });
    const exit = st.find((s) => s.text.startsWith('exit_group'));
    if (exit) events.push({ name: 'python: exit_group', at: exit.at });
    const serverStart = await started(pid);
    const ppid = pid ? Number((await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ')[1]) : undefined;
    const holderStart = await started(ppid);
    if (serverStart !== undefined && serverStart > 0) events.push({ name: 'server process starts', at: serverStart });
    if (holderStart !== undefined && holderStart > 0) events.push({ name: 'holder process starts', at: holderStart });
    events.sort((a, b) => a.at - b.at);
    const cpu1 = await cpuMs(pid);
    const threadCpu = await threadCpuMs(pid);
    if (serverPid === pid) for (const [name, t] of threads0) threadCpu.set(name, (threadCpu.get(name) ?? 0) - t);
    return { build: build.name, arm, rtt, run: run0, readyMs, totalMs, ...(cpu1 !== undefined ? { serverCpuMs: cpu1 - (serverPid === pid ? cpu0 ?? 0 : 0) } : {}), threadCpuMs: threadCpu, events };
  };
  try {
    if (arm === 'warm') {
      await once();
      await run(process.execPath, [CLI, 'unmount', mnt, '--cache-dir', cacheDir], env);
    }
    if (arm === 'served') await cpuQuiet(Number(/server pid (\d+)/.exec((await run(process.execPath, [CLI, 'server', 'start', '--cache-dir', cacheDir], env)).out)?.[1]));
    const t = await once();
    await run(process.execPath, [CLI, 'unmount', mnt, '--cache-dir', cacheDir], env).catch(async () => sh('umount', ['-l', mnt]).catch(() => undefined));
    return t;
  } finally {
    if (arm === 'served') await run(process.execPath, [CLI, 'server', 'stop', '--cache-dir', cacheDir], env).catch(() => undefined);
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

const ms = (x: number | undefined): string => (x === undefined ? '-' : `${Math.round(x)}`);

/** Median ms of the first event of each name, per arm (cold, served, warm), in the cold order. */
function phaseTable(traces: Trace[]): string[] {
  const names: string[] = [];
  for (const t of traces) for (const e of t.events) if (!names.includes(e.name)) names.push(e.name);
  const at = (arm: string, n: string): number | undefined => {
    const hits = traces.filter((t) => t.arm === arm).map((t) => t.events.find((e) => e.name === n)?.at).filter((x): x is number => x !== undefined);
    return hits.length ? median(hits) : undefined;
  };
  return names.map((n) => ({ n, cold: at('cold', n), served: at('served', n), warm: at('warm', n) }))
    .sort((a, b) => (a.cold ?? a.served ?? a.warm ?? 0) - (b.cold ?? b.served ?? b.warm ?? 0))
    .map((p) => `| ${p.n} | ${ms(p.cold)} | ${ms(p.served)} | ${ms(p.warm)} |`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  console.log(`uptime before: ${(await sh('uptime', [])).trim()}`);
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  const proxies = new Map<number, ThrottleProxy>();
  try {
    registry = await startRegistry();
    registryPid = Number((await sh('pgrep', ['-n', '-f', 'docker-registry serve'])).trim()) || undefined;
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPO}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const first = proxies.get(RTTS[0]!)!;
    const refOf = (p: ThrottleProxy): string => `${p.host}/${REPO}:${img.tag}`;
    const pub = path.join(scratch, 'publisher');
    await sh(process.execPath, [CLI, 'index', refOf(first), '--push', '--cache-dir', pub, '--no-progress']);
    await sh(process.execPath, [CLI, 'profile', refOf(first), '--push', '--cache-dir', pub, '--json', '--', ...PROGRAM]);
    const traces: Trace[] = [];
    for (let r = 1; r <= RUNS; r++) {
      for (const [rtt, via] of proxies) {
        const all: Arm[] = ['cold', 'served', 'warm'];
        const arms = all.map((_, i) => all[(i + r - 1) % all.length]!);
        const builds = BUILDS.map((_, i) => BUILDS[(i + r - 1) % BUILDS.length]!);
        for (const arm of arms.filter((a) => (process.env.ARMS ?? 'cold,warm').split(',').includes(a))) for (const build of builds) {
          const t = await trace(build, arm, r, rtt, via, refOf(via), scratch);
          traces.push(t);
          console.log(`\n### ${BUILDS.length > 1 ? `${build.name}: ` : ''}${arm}, ${rtt} ms RTT, round ${r}: ready ${ms(t.readyMs)} ms, end of python ${ms(t.totalMs)} ms, server CPU ${ms(t.serverCpuMs)} ms (${[...(t.threadCpuMs ?? [])].filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ')}; threads that ended are not counted)`);
          for (const e of t.events) console.log(`${ms(e.at).padStart(6)}${e.end !== undefined ? `-${ms(e.end)}` : ''}  ${e.name}${e.note ? `  (${e.note})` : ''}`);
        }
      }
    }
    for (const rtt of RTTS) {
      const ts = traces.filter((t) => t.rtt === rtt);
      console.log(`\nPhases at ${rtt} ms RTT (ms from \`clip mount\`, medians of ${RUNS} rounds):`);
      console.log('| event | cold | served | warm |\n|---|---|---|---|');
      for (const l of phaseTable(ts.filter((t) => t.build === BUILDS[0]!.name))) console.log(l);
      for (const arm of ['cold', 'served', 'warm']) for (const build of BUILDS) {
        const a = ts.filter((t) => t.arm === arm && t.build === build.name);
        if (!a.length) continue;
        const cpu = a.map((t) => t.serverCpuMs).filter((x): x is number => x !== undefined);
        const main = a.map((t) => t.threadCpuMs?.get('main')).filter((x): x is number => x !== undefined);
        console.log(`${build.name} ${arm}: server CPU median ${ms(cpu.length ? median(cpu) : undefined)} ms (${ms(Math.min(...cpu))}–${ms(Math.max(...cpu))}), main thread ${ms(main.length ? median(main) : undefined)} ms; end median ${ms(median(a.map((t) => t.totalMs)))} ms`);
        console.log(`${build.name} ${arm}: ready ${a.map((t) => ms(t.readyMs)).join(', ')} ms; end ${a.map((t) => ms(t.totalMs)).join(', ')} ms; server CPU ${a.map((t) => ms(t.serverCpuMs)).join(', ')} ms`);
      }
    }
    console.log(`uptime after: ${(await sh('uptime', [])).trim()}`);
  } finally {
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
