/**
 * Mount ready time on an empty node with a published index (issue 12 item 4), run by hand as root
 * after `npm run build`:
 *   node --import tsx bench/index/mount-ready.ts        RUNS=3 RATE_MB=100 RTTS=0,25 [BASE=DIR]
 * The debian-python image is pushed to a real registry with its index published (`clip index
 * --push`) and a python profile pushed next to it (`clip profile --push`), as profiled-mount.ts
 * does. Behind the throttle proxy (one per RTT), RUNS rounds; in each, per RTT, each build (this
 * one, and BASE's dist/ when BASE names a checkout built from main) in rotating order, from an
 * empty cache directory and a dropped page cache, timed from `clip mount REF MNT --background` to
 * its return. No program runs: this is the ready time alone, unmounted right after.
 * Phases, with no instrumentation in clip: the proxy's log places each registry request (start,
 * end) on the same clock, and the server's log (pino `time`) places "server: listening" and
 * "server: mounted". Before the first request: the CLI's Node start and module loading.
 * Writes its figures into bench/index/RESULTS.md between its markers (WRITE=0: print only).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushLayout } from '../../src/oci/push.js';
import { serverFiles } from '../../src/server/paths.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { linkSettings, median, sh, syncAndDrop, writeBetweenMarkers } from '../coldstart/coldstart.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-mount-ready');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);
const { rateMb: RATE_MB, rtts: RTTS, indexArgs: INDEX_ARGS } = linkSettings('0,25');
const repoOf = (b: Build): string => `bench/ready-${BUILDS.indexOf(b)}`;
const PROGRAM = ['python3', '-c', 'import json'];

interface Build {
  name: string;
  cli: string;
}
const BUILDS: Build[] = [{ name: 'this build', cli: path.join(REPO_ROOT, 'dist/cli/main.js') }];
if (process.env.BASE) BUILDS.push({ name: 'before', cli: path.join(path.resolve(process.env.BASE), 'dist/cli/main.js') });

interface Row {
  build: string;
  run: number;
  rtt: number;
  readyMs: number;
  /** Milliseconds from `clip mount` to each event. */
  events: { name: string; startMs: number; endMs?: number }[];
}

/** What each registry request was for, from its path: blobs read whole are named in order, with their size. */
function requestNames(served: readonly ServedRequest[]): string[] {
  let blobs = 0;
  let manifests = 0;
  return served.map((r) => {
    if (r.path.includes('/manifests/sha256-')) return `${r.method} referrers (tag schema)`;
    if (r.path.includes('/referrers/')) return `${r.method} referrers API`;
    if (r.path.includes('/manifests/')) return `${r.method} manifest #${++manifests}`;
    if (r.path.includes('/blobs/')) return r.range ? 'layer range' : `${r.method} blob #${++blobs} (${Math.round(r.bytes / 1000)} kB)`;
    return `${r.method} ${r.path}`;
  });
}

async function trial(build: Build, run: number, rtt: number, proxy: ThrottleProxy, ref: string, scratch: string): Promise<Row> {
  const cacheDir = await mkdtemp(path.join(scratch, 'cache-'));
  const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
  try {
    await syncAndDrop();
    proxy.reset();
    const wall0 = Date.now();
    const t0 = performance.now();
    await sh(process.execPath, [build.cli, 'mount', ref, mnt, '--background', '--cache-dir', cacheDir]);
    const readyMs = performance.now() - t0;
    const names = requestNames(proxy.served);
    const events: Row['events'] = proxy.served.map((r, i) => ({ name: names[i]!, startMs: r.startMs, ...(r.endMs !== undefined ? { endMs: r.endMs } : {}) }));
    await sh(process.execPath, [build.cli, 'unmount', mnt, '--cache-dir', cacheDir]).catch(async () => sh('umount', ['-l', mnt]).catch(() => undefined));
    const log = await readFile(serverFiles(cacheDir).log, 'utf8').catch(() => '');
    for (const line of log.split('\n')) {
      if (!line.startsWith('{')) continue;
      const rec = JSON.parse(line) as { time?: number; msg?: string };
      if (rec.time === undefined || !rec.msg) continue;
      if (/^server: (listening|mounted)$|^profile: (found|prefetch done)|^holder: /.test(rec.msg)) events.push({ name: rec.msg.replace(/\s*\(.*$/, ''), startMs: rec.time - wall0 });
    }
    events.sort((a, b) => a.startMs - b.startMs);
    return { build: build.name, run, rtt, readyMs, events };
  } finally {
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

const ms = (x: number | undefined): string => (x === undefined ? '-' : `${Math.round(x)}`);
const s2 = (x: number): string => `${(x / 1000).toFixed(2)} s`;

/** The median start (and end) of the first event of each name, over rows. */
function phaseTable(rows: Row[]): string[] {
  const names: string[] = [];
  for (const r of rows) for (const e of r.events) if (!names.includes(e.name)) names.push(e.name);
  const firstOf = (r: Row, n: string) => r.events.find((e) => e.name === n);
  const out = names.map((n) => {
    const hits = rows.map((r) => firstOf(r, n)).filter((e) => e !== undefined);
    const ends = hits.map((e) => e.endMs).filter((e): e is number => e !== undefined);
    return { n, start: median(hits.map((e) => e.startMs)), end: ends.length ? median(ends) : undefined, seen: hits.length };
  }).sort((a, b) => a.start - b.start);
  return out.map((p) => `| ${p.n} | ${p.seen}/${rows.length} | ${ms(p.start)} | ${ms(p.end)} |`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  for (const b of BUILDS) if (!existsSync(b.cli)) throw new Error(`${b.cli} is missing: build it first`);
  const date = new Date().toISOString();
  const uptimeBefore = (await sh('uptime', [])).trim();
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  const proxies = new Map<number, ThrottleProxy>();
  try {
    registry = await startRegistry();
    // Each build publishes its own index and profile (in its own repository): an index of this
    // build's format may be one the build before cannot read.
    for (const b of BUILDS) await pushLayout(img.layoutDir, img.tag, `${registry.host}/${repoOf(b)}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const first = proxies.get(RTTS[0]!)!;
    const refOf = (p: ThrottleProxy, b: Build): string => `${p.host}/${repoOf(b)}:${img.tag}`;
    const published: string[] = [];
    for (const b of BUILDS) {
      const pub = path.join(scratch, `publisher-${repoOf(b).replace(/\W/g, '-')}`);
      const indexed = JSON.parse((await sh(process.execPath, [b.cli, 'index', refOf(first, b), '--push', '--cache-dir', pub, '--no-progress', '--json', ...INDEX_ARGS])).trim()) as { indexBytes: number };
      const profiled = JSON.parse((await sh(process.execPath, [b.cli, 'profile', refOf(first, b), '--push', '--cache-dir', pub, '--json', '--', ...PROGRAM])).trim().split('\n').at(-1)!) as { profileBytes: number; ranges: number };
      published.push(`${b.name}: index ${indexed.indexBytes} bytes, profile ${profiled.profileBytes} bytes (${profiled.ranges} ranges)`);
    }
    console.log(published.join('\n'));

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const [rtt, via] of proxies) {
        const order = BUILDS.map((_, i) => BUILDS[(i + run - 1) % BUILDS.length]!);
        for (const build of order) {
          const row = await trial(build, run, rtt, via, refOf(via, build), scratch);
          rows.push(row);
          console.log(`| ${rtt} ms | ${build.name} | ${run} | ${s2(row.readyMs)} | ${row.events.map((e) => `${e.name} ${ms(e.startMs)}${e.endMs !== undefined ? `-${ms(e.endMs)}` : ''}`).join('; ')} |`);
        }
      }
    }
    const lines: string[] = [];
    for (const rtt of RTTS) {
      for (const b of BUILDS) {
        const rs = rows.filter((r) => r.rtt === rtt && r.build === b.name);
        const ready = rs.map((r) => r.readyMs);
        lines.push(`| ${rtt} ms | ${b.name} | ${rs.length} | ${s2(median(ready))} (${s2(Math.min(...ready))} to ${s2(Math.max(...ready))}) | ${rs.map((r) => s2(r.readyMs)).join(', ')} |`);
      }
    }
    const ratios = BUILDS.length > 1 ? RTTS.map((rtt) => {
      const of = (b: string): Row[] => rows.filter((r) => r.rtt === rtt && r.build === b);
      const before = of('before');
      const after = of('this build');
      const per = after.map((a) => { const b = before.find((x) => x.run === a.run); return b ? (b.readyMs / a.readyMs).toFixed(2) : '-'; }).join(', ');
      return `- ${rtt} ms RTT: ready, before / this build: **${(median(before.map((r) => r.readyMs)) / median(after.map((r) => r.readyMs))).toFixed(2)}x** (per round ${per}).`;
    }) : [];
    const phases: string[] = [];
    for (const rtt of RTTS) {
      for (const b of BUILDS) {
        phases.push('', `Phases, ${b.name}, ${rtt} ms RTT (ms from \`clip mount\`, medians of the rounds; a request's start is when the proxy got it, its end when it sent the last byte):`, '',
          '| event | seen | start | end |', '|---|---|---|---|', ...phaseTable(rows.filter((r) => r.rtt === rtt && r.build === b.name)));
      }
    }
    const figures = [
      `Command: \`node --import tsx bench/index/mount-ready.ts\` (RUNS=${RUNS})${process.env.BASE ? ' (BASE=a checkout of main, built)' : ''}${INDEX_ARGS.length ? ` (INDEX_ARGS="${INDEX_ARGS.join(' ')}")` : ''} (as root, after \`npm run build\`)`,
      `Date: ${date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${uptimeBefore}\`; after: \`${(await sh('uptime', [])).trim()}\`.`,
      `Proxy: ${RATE_MB} MB/s; RTT ${RTTS.join(' and ')} ms. ${RUNS} rounds, builds in rotating order, each from an empty cache directory with the page cache dropped; the index and a python profile published in the registry.`,
      '',
      `Image: ${describeImage(img)}`,
      '',
      `Published (each build its own, with its defaults): ${published.join('; ')}.`,
      '',
      '| RTT | build | runs | ready: median (min to max) | every round |',
      '|---|---|---|---|---|',
      ...lines,
      '',
      ...ratios,
      ...phases,
    ].join('\n');
    console.log(`\n${figures}`);
    if (process.env.WRITE !== '0') {
      const begin = '<!-- mount-ready:begin (written by mount-ready.ts) -->';
      const end = '<!-- mount-ready:end -->';
      const old = await readFile(RESULTS, 'utf8');
      if (!old.includes(begin)) {
        const { writeFile } = await import('node:fs/promises');
        await writeFile(RESULTS, `${old.trimEnd()}\n\n## Mount ready time on an empty node (issue 12 item 4)\n\n\`\`\`\nBASE=DIR node --import tsx bench/index/mount-ready.ts        # RUNS=3 RATE_MB=100 RTTS=0,25\n\`\`\`\n\n${begin}\n${end}\n`);
      }
      await writeBetweenMarkers(RESULTS, { begin, end, fresh: '' }, figures);
      console.log(`written to ${RESULTS}`);
    }
  } finally {
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
