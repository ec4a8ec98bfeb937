/**
 * Real redis-server processes for tests: a single server on a free loopback port, and a 3-master
 * Redis Cluster made with `redis-cli --cluster create`. Each lives in its own temporary directory
 * and is stopped (and its directory removed) by `stop()`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { onFreePort } from './ports.js';

const execFileP = promisify(execFile);

export interface RedisServer {
  host: string;
  port: number;
  url: string;
  pid: number;
  /** Run a redis-cli command against it (authenticated when it has a password); its output. */
  cli(...args: string[]): Promise<string>;
  /** Freeze the server (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export interface RedisCluster {
  nodes: { host: string; port: number }[];
  url: string;
  stop(): Promise<void>;
}

export { freePort } from './ports.js';

async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--no-auth-warning', ...args], { timeout: 10_000 });
  return stdout.trim();
}

async function waitForPing(port: number, child: ChildProcess, logs: () => string, auth: string[] = [], timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      // Its last words (say, "address already in use") may come after the exit: wait for the pipes.
      if (child.stdout && !child.stdout.readableEnded) await new Promise((r) => child.once('close', r));
      throw new Error(`redis-server on port ${port} exited with ${child.exitCode}: ${logs()}`);
    }
    try {
      // Ours only: another test's server may have taken the port before ours could bind it.
      if ((await redisCli(port, ...auth, 'PING')) === 'PONG' && /^process_id:(\d+)/m.exec(await redisCli(port, ...auth, 'INFO', 'server'))?.[1] === String(child.pid)) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer PING`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    try {
      child.kill('SIGCONT');
    } catch {
      // already gone
    }
    child.kill('SIGKILL');
  });
}

async function spawnServer(port: number, dir: string, extra: string[] = [], auth: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const collect = (d: Buffer): void => void (output = (output + d.toString('utf8')).slice(-4000));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  await waitForPing(port, child, () => output, auth);
  return child;
}

/** With `password`, the server requires it (requirepass) and `url` carries it. */
export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'clip-redis-'));
  const auth = opts.password ? ['-a', opts.password] : [];
  const { port, started: child } = await onFreePort((p) => spawnServer(p, dir, opts.password ? ['--requirepass', opts.password] : [], auth));
  return {
    host: '127.0.0.1',
    port,
    url: opts.password ? `redis://:${encodeURIComponent(opts.password)}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`,
    cli: (...args: string[]) => redisCli(port, ...auth, ...args),
    pid: child.pid!,
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    async stop() {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'clip-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const { port, started } = await onFreePort(async (p) => {
        const nodeDir = path.join(dir, String(p));
        await mkdir(nodeDir, { recursive: true });
        return spawnServer(p, nodeDir, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000']);
      }, 10_000);
      children.push(started);
      ports.push(port);
    }
    await execFileP(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 30_000 },
    );
    const until = Date.now() + 30_000;
    for (;;) {
      const states = await Promise.all(ports.map((p) => redisCli(p, 'CLUSTER', 'INFO')));
      if (states.every((s) => s.includes('cluster_state:ok'))) break;
      if (Date.now() > until) throw new Error('redis cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    stop,
  };
}
