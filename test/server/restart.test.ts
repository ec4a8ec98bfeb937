/**
 * Mounts outlive their server: kill -9 the node's server while 16 readers read random ranges of
 * the image's files (compared byte for byte with `umoci unpack`) and a walker stats and lists the
 * tree; the holder starts a new server on the same descriptors, the kernel resends what the dead
 * one had read (on whichever reader thread read it), and no reader sees an error or a wrong byte. Files opened before a kill are read
 * after it, and a shell started from a second image on the same server runs programs after it.
 * A server that cannot start is backed off, reported, and the mount fails clean.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, read, readdirSync, readFileSync, readSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoImage } from '../../src/demo/index.js';
import { serverFiles } from '../../src/server/paths.js';
import { processStartTime } from '../../src/mount/files.js';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { READERS_PY } from '../support/readers.js';
import { freePort, startRegistry, type TestRegistry } from '../support/registry.js';
import { umociUnpack } from '../support/tools.js';
import { run } from '../fuse/tools.js';
import { clip, fuseMounted, waitUntil } from '../mount/helpers.js';

const SECONDS = 12;
const DEMO_DIR = fileURLToPath(new URL('../../.tmp/demo-restart', import.meta.url));
const README = 'The clip demo program: run it with the image\'s default command.\n';
const KILLS = 3;

/** Walks the tree again and again with lstat and listdir until killed; prints errors. */
const WALKER_PY = String.raw`
import os, sys, time
mnt, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
errors = 0
while time.monotonic() < deadline:
    for d, dirs, names in os.walk(mnt):
        for n in dirs + names:
            try: os.lstat(os.path.join(d, n))
            except OSError as e:
                errors += 1; print(e, file=sys.stderr)
print(errors)
`;

/** The pid in the mount's status file: the server serving it now. */
function serverPid(cache: string): number {
  const name = readdirSync(join(cache, 'mounts')).find((n) => n.endsWith('.json'))!;
  return (JSON.parse(readFileSync(join(cache, 'mounts', name), 'utf8')) as { pid: number }).pid;
}

/** A file of the tree larger than 1 KiB, relative to its root. */
function firstFile(root: string): string {
  return execFileSync('find', ['.', '-type', 'f', '-size', '+1k'], { cwd: root, encoding: 'utf8' }).split('\n')[0]!.replace(/^\.\//, '');
}

describe.skipIf(skipUnlessRoot())('the node server restarts under load', () => {
  let registry: TestRegistry;
  let work: string;
  let ref: string;
  let oracle: string;
  let demo: string;

  beforeAll(async () => {
    registry = await startRegistry();
    work = await mkdtemp(join(tmpdir(), 'clip-restart-'));
    ref = await pushFixture('big', registry.host);
    const fx = await fixture('big');
    oracle = await umociUnpack(fx.layoutDir, fx.oracleTag!, join(work, 'unpack'));
    demo = (await buildDemoImage({ dir: DEMO_DIR })).ref; // a shell, coreutils and python
  }, 300_000);
  afterAll(async () => {
    delete process.env.CLIP_FUSE_THREADS;
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const kill9 = async (cache: string): Promise<void> => void process.kill(serverPid(cache), 'SIGKILL');
  const cases: { how: string; replace: (cache: string) => Promise<void>; threads?: string }[] = [
    // Reader threads as many as the load asks for (the default), then three always: every thread
    // reads the descriptor the holder keeps, so what a killed server had read is resent.
    { how: 'kill -9 of the server', replace: kill9 },
    { how: 'kill -9 of the server with 3 FUSE reader threads', replace: kill9, threads: '3' },
    {
      how: 'clip server restart (an upgrade)',
      replace: async (cache) => {
        const r = await clip(['server', 'restart', '--cache-dir', cache]);
        expect(r.code, r.stderr).toBe(0);
      },
    },
  ];

  it.each(cases)(`$how ${KILLS} times under 16 readers, a walker and a shell started before: every read right, no error; the holder ends with the last mount`, async ({ replace, threads }) => {
    // The server inherits it through the holder, which `clip mount` starts.
    if (threads) process.env.CLIP_FUSE_THREADS = threads;
    else delete process.env.CLIP_FUSE_THREADS;
    const mnt = await mkdtemp(join(work, 'mnt-'));
    const cache = await mkdtemp(join(work, 'cache-'));
    const metricsPort = await freePort();
    const up = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--read-timeout', '60s', '--metrics-addr', `127.0.0.1:${metricsPort}`]);
    expect(up.code, up.stderr).toBe(0);
    const holder = Number(readFileSync(serverFiles(cache).lock, 'utf8').split('\n')[0]);
    // A second image on the same server, and a shell started from it before the kills.
    const shellMnt = await mkdtemp(join(work, 'shell-'));
    const second = await clip(['mount', demo, shellMnt, '--cache-dir', cache, '--background']);
    expect(second.code, second.stderr).toBe(0);
    const shell = spawn('chroot', [shellMnt, '/bin/sh', '-c', 'while read line; do /bin/cat /app/README; echo "$line"; done'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let shellOut = '';
    shell.stdout.on('data', (d: Buffer) => (shellOut += d.toString()));
    const shellDone = new Promise<number | null>((r) => shell.on('close', (code) => r(code)));
    shell.stdin.write('before\n');
    expect(await waitUntil(() => shellOut.includes('before'), 20_000)).toBe(true);
    // A file opened before the kills, read after them.
    const before = openSync(join(mnt, firstFile(oracle)), 'r');
    try {
      const readers = run('python3', ['-c', READERS_PY, mnt, oracle, String(SECONDS), '16'], { timeoutMs: (SECONDS + 90) * 1000 });
      const walker = run('python3', ['-c', WALKER_PY, mnt, String(SECONDS)], { timeoutMs: (SECONDS + 90) * 1000 });
      const replaced: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        await new Promise((r) => setTimeout(r, (SECONDS * 1000) / (KILLS + 1)));
        replaced.push(serverPid(cache));
        await replace(cache);
        // The holder starts another one, which writes the mount's status anew.
        expect(await waitUntil(() => { try { const p = serverPid(cache); return !replaced.includes(p) && processStartTime(p) !== undefined; } catch { return false; } }, 30_000)).toBe(true);
      }
      const [r, w] = await Promise.all([readers, walker]);
      expect(r.stderr).toBe('');
      const stats = JSON.parse(r.stdout) as { reads: number; mismatches: string[]; errors: string[] };
      expect(stats.errors).toEqual([]);
      expect(stats.mismatches).toEqual([]);
      expect(stats.reads).toBeGreaterThan(16);
      expect(w.stderr).toBe('');
      expect(w.stdout.trim()).toBe('0');
      // The shell started before the kills runs programs from its image after them.
      shell.stdin.end('after\n');
      expect(await shellDone).toBe(0);
      expect(shellOut).toBe(`${README}before\n${README}after\n`);
      const buf = Buffer.alloc(64);
      const n = readSync(before, buf, 0, 64, 0);
      expect(buf.subarray(0, n)).toEqual(readFileSync(join(oracle, firstFile(oracle))).subarray(0, n));
      // The holder lived through it all, and the status says how many restarts there were.
      expect(processStartTime(holder)).toBeDefined();
      const st = await clip(['mounts', '--cache-dir', cache, '--json']);
      expect((JSON.parse(st.stdout) as { restarts: number }[]).map((m) => m.restarts)).toEqual([KILLS, KILLS]);
      // So do the mount's metrics, served again by the new server, with its memory.
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^clip_server_restarts ${KILLS}$`, 'm'));
      expect(Number(/^clip_process_resident_memory_bytes (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(10 * 1024 * 1024);
    } finally {
      closeSync(before);
      shell.kill('SIGKILL');
      for (const m of [mnt, shellMnt]) {
        const down = await clip(['unmount', m, '--cache-dir', cache]);
        expect(down.code, down.stderr).toBe(0);
      }
    }
    expect(fuseMounted(mnt)).toBe(false);
    // With no mount left, the server and the holder end by themselves.
    expect(await waitUntil(() => processStartTime(holder) === undefined, 20_000)).toBe(true);
    expect(existsSync(serverFiles(cache).lock)).toBe(false);
  }, (SECONDS + 240) * 1000);

  it('a server that dies every time it starts is backed off, reported, and the mount fails clean: errors, never a hang', async () => {
    const mnt = await mkdtemp(join(work, 'mnt-'));
    const cache = await mkdtemp(join(work, 'cache-'));
    const up = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background']);
    expect(up.code, up.stderr).toBe(0);
    const holder = Number(readFileSync(serverFiles(cache).lock, 'utf8').split('\n')[0]);
    const before = openSync(join(mnt, firstFile(oracle)), 'r');
    try {
      // Kill each server the holder starts, as soon as it appears, until the holder stops trying.
      const killed = new Set<number>();
      const t0 = Date.now();
      while (processStartTime(holder) !== undefined && Date.now() - t0 < 90_000) {
        // Only servers: the holder's other children are its `umount -l` when it gives up, and
        // killing those (slow to finish on a loaded machine) left the mount behind.
        for (const pid of childrenOf(holder)) {
          if (!killed.has(pid) && isServer(pid)) {
            killed.add(pid);
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(processStartTime(holder)).toBeUndefined();
      expect(killed.size).toBeGreaterThan(5); // the first and the restarts the holder allowed
      expect(readFileSync(serverFiles(cache).log, 'utf8')).toContain('the server keeps crashing; giving up');
      // The mount is gone, and a file open on it fails instead of hanging.
      expect(await waitUntil(() => !fuseMounted(mnt), 10_000)).toBe(true);
      // (In the libuv pool: a read that hung would fail this test by its timeout, not pass it.)
      const outcome = await new Promise<string>((resolve) => read(before, Buffer.alloc(10), 0, 10, 0, (err) => resolve(err ? (err.code ?? 'error') : 'read')));
      expect(['ENOTCONN', 'EIO', 'ECONNABORTED']).toContain(outcome);
    } finally {
      try {
        closeSync(before);
      } catch {
        // ENOTCONN: the connection is gone, as it should be
      }
    }
    expect((await clip(['mounts', '--cache-dir', cache, '--json'])).stdout.trim()).toBe('[]');
  }, 180_000);
});

/** The pids of a process's children. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whether a process is a clip server (node running server/main.js), not another child of the holder. */
function isServer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => /server[\\/]main\.[jt]s$/.test(arg));
  } catch {
    return false;
  }
}
