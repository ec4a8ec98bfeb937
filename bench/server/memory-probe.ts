/**
 * Where the node server's memory goes under random readers (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/memory-probe.ts      MOUNTS=20 RANDOM_S=30 READERS=32 [WARM=1] [SETTLE_S=10] [LATENCY=N]
 * Mounts MOUNTS images of debian-python (as bench/server/memory.ts builds them; kept with the cache
 * in PROBE_DIR, default .tmp/probe, between runs: the second run has a warm disk cache), then runs
 * readers.py random and prints the server's RSS (anon) and process.memoryUsage() from its status
 * every 2 s. WARM=1 reads every file of the first mount first; SETTLE_S waits before the readers;
 * LATENCY=N runs memory.ts's one-at-a-time phase (N getxattr + N 4 KiB preads over every mount) before them.
 * CLIP_SERVER_V8_FLAGS="... --trace-gc" puts V8's GC lines in the server's log;
 * with "--inspect=127.0.0.1:0" and PROFILE=FILE a sampled allocation profile of the readers'
 * time is written (node --experimental-websocket needed for this script).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { askServer } from '../../src/server/client.js';
import { buildDebianPython } from '../images/debian-python.js';
import { regularFiles, variants } from './variants.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = process.env.CLIP_CLI ?? path.join(REPO_ROOT, 'dist/cli/main.js');
const READERS_PY = fileURLToPath(new URL('./readers.py', import.meta.url));
const MOUNTS = Number(process.env.MOUNTS ?? 20);
const RANDOM_S = Number(process.env.RANDOM_S ?? 30);
const READERS = Number(process.env.READERS ?? 32);
const dir = path.resolve(process.env.PROBE_DIR ?? path.join(REPO_ROOT, '.tmp/probe'));
const layout = path.join(dir, 'layout');
const cache = path.join(dir, process.env.PROBE_CACHE ?? 'cache');

const kb = (st: string, k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) / 1024;
const mib = (b: number): string => (b / 2 ** 20).toFixed(1);

async function sample(label: string): Promise<void> {
  const r = await askServer(cache, { op: 'status' });
  if (!r?.ok || r.op !== 'status') return;
  const st = readFileSync(`/proc/${r.pid}/status`, 'utf8');
  const m = r.memory;
  console.log(`${label} rss ${kb(st, 'VmRSS').toFixed(1)} anon ${kb(st, 'RssAnon').toFixed(1)} heapUsed ${mib(m.heapUsed)} heapTotal ${mib(m.heapTotal)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)} keptSpans ${mib(m.keptSpans ?? 0)} threads ${kb(st, 'Threads') * 1024}`);
}

/** A sampled allocation profile (collected objects included) of the server through its inspector, top sites by bytes. */
async function allocationProfile(logFile: string, seconds: number): Promise<string> {
  const url = [...readFileSync(logFile, 'utf8').matchAll(/ws:\/\/[^\s"]+/g)].pop()?.[0];
  if (!url) throw new Error('no inspector address in the server log (CLIP_SERVER_V8_FLAGS needs --inspect=127.0.0.1:0)');
  const WS = (globalThis as unknown as { WebSocket: new (u: string) => WebSocketLike }).WebSocket;
  const ws = new WS(url);
  await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
  let id = 0;
  const pending = new Map<number, (v: { result: { profile: ProfileNode & { head: ProfileNode } } }) => void>();
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data) as { id?: number; result: never };
    if (msg.id) pending.get(msg.id)?.(msg);
  };
  const call = (method: string, params: object = {}): Promise<{ result: { profile: ProfileNode & { head: ProfileNode } } }> =>
    new Promise((r) => {
      pending.set(++id, r);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('HeapProfiler.enable');
  await call('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const res = await call('HeapProfiler.stopSampling');
  ws.close();
  const self = new Map<string, number>();
  const walk = (n: ProfileNode): void => {
    const cf = n.callFrame;
    const name = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + n.selfSize);
    for (const c of n.children) walk(c);
  };
  walk(res.result.profile.head);
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, v]) => `${mib(v).padStart(8)} MB  ${k}`).join('\n');
}

interface WebSocketLike { onopen: unknown; onerror: unknown; onmessage: (ev: { data: string }) => void; send(s: string): void; close(): void }
interface ProfileNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: ProfileNode[] }

async function main(): Promise<void> {
  let tags: string[];
  if (!existsSync(path.join(dir, 'tags.json'))) {
    const image = await buildDebianPython();
    await mkdir(dir, { recursive: true });
    await cp(image.layoutDir, layout, { recursive: true });
    tags = ['latest', ...(await variants(layout, 19))];
    writeFileSync(path.join(dir, 'tags.json'), JSON.stringify(tags));
  } else tags = JSON.parse(readFileSync(path.join(dir, 'tags.json'), 'utf8')) as string[];
  const mnts: string[] = [];
  try {
    for (let i = 0; i < MOUNTS; i++) {
      const mnt = path.join(dir, `mnt${i}`);
      await mkdir(mnt, { recursive: true });
      execFileSync(process.execPath, [CLI, 'mount', `oci:${layout}:${tags[i]}`, mnt, '--background', '--cache-dir', cache], { stdio: ['ignore', 'ignore', 'inherit'] });
      mnts.push(mnt);
    }
    await new Promise((r) => setTimeout(r, 3000));
    await sample('idle');
    const f0 = await regularFiles(mnts[0]!);
    if (process.env.WARM) {
      const buf = Buffer.alloc(1 << 20);
      for (const [p] of f0) {
        const fd = openSync(p, 'r');
        while (readSync(fd, buf, 0, buf.length, null) > 0);
        closeSync(fd);
      }
      await sample('warm');
    }
    const list = path.join(dir, 'files-all.txt');
    writeFileSync(list, mnts.flatMap((m) => f0.map(([p, s]) => `${path.join(m, path.relative(mnts[0]!, p))}\t${s}`)).join('\n'));
    if (process.env.SETTLE_S) {
      await new Promise((r) => setTimeout(r, Number(process.env.SETTLE_S) * 1000));
      await sample('settled');
    }
    if (process.env.LATENCY) {
      execFileSync('python3', [READERS_PY, 'latency', process.env.LATENCY, list], { stdio: ['ignore', 'ignore', 'inherit'] });
      await sample('after latency');
    }
    const t0 = Date.now();
    const child = spawn('python3', [READERS_PY, 'random', String(RANDOM_S), String(READERS), list], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise((r) => child.on('close', r));
    const profile = process.env.PROFILE;
    if (profile) void allocationProfile(path.join(cache, 'server/server.log'), Math.max(1, RANDOM_S - 5)).then((t) => writeFileSync(profile, `${t}\n`), (e: unknown) => console.log('profile failed', e));
    const timer = setInterval(() => void sample(`t=${((Date.now() - t0) / 1000).toFixed(0)}`), 2000);
    await done;
    clearInterval(timer);
    console.log(out.trim());
    await sample('after');
    await new Promise((r) => setTimeout(r, 10_000));
    await sample('after 10 s');
  } finally {
    for (const m of mnts) execFileSync(process.execPath, [CLI, 'unmount', m, '--cache-dir', cache], { stdio: 'ignore' });
  }
}

await main();
