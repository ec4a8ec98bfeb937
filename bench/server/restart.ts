/**
 * How long a mount stalls when its server dies (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/server/restart.ts        KILLS=20 READERS=4
 * The debian-python image (bench/images/debian-python.ts) is mounted from its local OCI layout by
 * the node's server (`clip mount --background`, index cached first). READERS python threads call
 * getxattr on files of the mount in a loop (the kernel never caches a missing xattr, so every call
 * is a round trip to the server). The server is killed with SIGKILL KILLS times, 5.5 s apart (a server
 * that dies sooner after its start counts toward the holder's crash-loop limit),
 * alternating with `clip server restart` when REPLACE=1. For each kill: the time from the kill to
 * the first request answered after it (the holder's restart, the new server's takeover, the
 * resend), and the longest gap any reader saw between two answers around it. Both clocks are
 * CLOCK_MONOTONIC (Node's hrtime, Python's time.monotonic).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountFiles } from '../../src/mount/files.js';
import { buildDebianPython } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const KILLS = Number(process.env.KILLS ?? 20);
const READERS = Number(process.env.READERS ?? 4);

const READERS_PY = String.raw`
import json, os, sys, threading, time
mnt, readers, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = [os.path.join(mnt, 'usr/bin', n) for n in sorted(os.listdir(os.path.join(mnt, 'usr/bin')))[:200]]
done = []
lock = threading.Lock()
def reader(k):
    mine, errors = [], 0
    i = k
    while not os.path.exists(stop_file):
        try:
            os.getxattr(files[i % len(files)], 'user.clip-bench')
        except OSError as e:
            if e.errno != 61: errors += 1  # ENODATA is the answer
        mine.append(time.monotonic())
        i += readers
    with lock: done.append((mine, errors))
ts = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({'answers': [m for m, _ in done], 'errors': sum(e for _, e in done)}))
`;

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

async function main(): Promise<void> {
  const image = await buildDebianPython();
  const work = await mkdtemp(path.join(REPO_ROOT, '.tmp/bench-restart-'));
  const mnt = path.join(work, 'mnt');
  const cache = path.join(work, 'cache');
  await mkdir(mnt);
  const ref = `oci:${image.layoutDir}:latest`;
  execFileSync(process.execPath, [CLI, 'mount', ref, mnt, '--background', '--cache-dir', cache], { stdio: 'inherit' });
  const stopFile = path.join(work, 'stop');
  const py = spawn('python3', ['-c', READERS_PY, mnt, String(READERS), stopFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  py.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const kills: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 2000));
    for (let k = 0; k < KILLS; k++) {
      const pidFile = mountFiles(cache, mnt).pid;
      const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
      const replace = process.env.REPLACE === '1' && k % 2 === 1;
      kills.push(now());
      if (replace) execFileSync(process.execPath, [CLI, 'server', 'restart', '--cache-dir', cache]);
      else process.kill(pid, 'SIGKILL');
      // Wait for the next server to write its pid, then a second of steady reading.
      for (let i = 0; i < 300; i++) {
        const p = Number((await readFile(pidFile, 'utf8').catch(() => '0')).split('\n')[0]);
        if (p !== pid && p > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // Past the holder's 5 s: each kill is a fresh crash, not part of a crash loop (which it would end).
      await new Promise((r) => setTimeout(r, 5500));
    }
  } finally {
    await writeFile(stopFile, '');
    await new Promise((r) => py.on('close', r));
    execFileSync(process.execPath, [CLI, 'unmount', mnt, '--cache-dir', cache], { stdio: 'inherit' });
  }
  const { answers, errors } = JSON.parse(out) as { answers: number[][]; errors: number };
  const toFirst: number[] = [];
  const stalls: number[] = [];
  for (const t of kills) {
    // 50 ms after the kill the old server is surely gone: an answer then is the new server's. Each
    // reader's first answer after that moment ends its wait; the earliest is the first answered request.
    const dead = t + 0.05;
    const firsts = answers.map((a) => a.find((x) => x > dead)).filter((x): x is number => x !== undefined);
    toFirst.push(Math.min(...firsts) - t);
    let longest = 0;
    for (const a of answers) {
      for (let i = 1; i < a.length; i++) if (a[i]! > t && a[i - 1]! < t + 5) longest = Math.max(longest, a[i]! - a[i - 1]!);
    }
    stalls.push(longest);
  }
  const ms = (x: number): string => `${(x * 1000).toFixed(0)} ms`;
  const total = answers.reduce((n, a) => n + a.length, 0);
  console.log(`${KILLS} kills (${process.env.REPLACE === '1' ? 'every other one a clip server restart' : 'SIGKILL'}), ${READERS} readers, ${total} getxattr answered, ${errors} errors`);
  console.log(`kill → first answer: median ${ms(quantile(toFirst, 0.5))}, min ${ms(Math.min(...toFirst))}, max ${ms(Math.max(...toFirst))}`);
  console.log(`longest stall a reader saw: median ${ms(quantile(stalls, 0.5))}, max ${ms(Math.max(...stalls))}`);
  await rm(work, { recursive: true, force: true });
}

await main();
