/**
 * A containerd of the test's own: Debian's containerd 1.6 with its root, state, socket and config
 * under a temporary directory (never the system service), the CRI plugin off, and `clip` as a
 * proxy snapshotter at the given socket. ctr and ctr-remote talk to it through its socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../support/tools.js';

export interface TestContainerd {
  dir: string;
  address: string;
  namespace: string;
  /** `ctr` against this containerd; rejects with its stderr on failure. */
  ctr(...args: string[]): Promise<string>;
  /** `ctr-remote` against this containerd. */
  ctrRemote(...args: string[]): Promise<string>;
  logs(): string;
  stop(): Promise<void>;
}

export async function startContainerd(snapshotterSocket: string): Promise<TestContainerd> {
  const dir = await mkdtemp(join(tmpdir(), 'clip-ctrd-'));
  const address = join(dir, 'containerd.sock');
  const config = `version = 2
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${address}"
[ttrpc]
  address = "${join(dir, 'containerd.sock.ttrpc')}"
[debug]
  level = "debug"
# Collect garbage after every deletion, so that removing a container or an image reaches the
# snapshotter (Remove) before the test looks, rather than after 100 mutations.
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
  schedule_delay = "0s"
[proxy_plugins]
  [proxy_plugins.clip]
    type = "snapshot"
    address = "${snapshotterSocket}"
`;
  const configFile = join(dir, 'config.toml');
  await writeFile(configFile, config);
  const child: ChildProcess = spawn('containerd', ['--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (d: Buffer): void => {
    output = (output + d.toString('utf8')).slice(-200_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const namespace = 'clip-test';
  const ctr = async (...args: string[]): Promise<string> => (await run('ctr', ['--address', address, '--namespace', namespace, ...args])).stdout;
  const ctrRemote = async (...args: string[]): Promise<string> => (await run('ctr-remote', ['--address', address, '--namespace', namespace, ...args])).stdout;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    // Whatever containerd left mounted under its root (a failed test's rootfs) goes before the files.
    await run('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}): ${output}`);
    try {
      await run('ctr', ['--address', address, 'version']);
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`containerd did not answer within 30 s: ${(err as Error).message}\n${output.slice(-5000)}`);
      }
      await sleep(100);
    }
  }
  return { dir, address, namespace, ctr, ctrRemote, logs: () => output, stop };
}

export interface SnapshotterProcess {
  pid: number;
  /** What it printed on stdout once it served. */
  stdout: string;
  log(): Promise<string>;
  /** SIGTERM, and wait for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), and wait for it to be gone. */
  kill(): Promise<void>;
}

/** `clip snapshotter ARGS` as its own process (the real entry point), its stderr appended to `logFile`; resolves once it serves. */
export async function startSnapshotterProcess(args: string[], logFile: string): Promise<SnapshotterProcess> {
  const { MAIN } = await import('../cli/program.js');
  const { openSync, closeSync } = await import('node:fs');
  const { readFile } = await import('node:fs/promises');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'snapshotter', ...args, '--log-level', 'info', '--log-format', 'json'], { stdio: ['ignore', 'pipe', fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const log = (): Promise<string> => readFile(logFile, 'utf8').catch(() => '');
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('serving on') && out.includes('\n')) resolve(out);
    });
    child.once('exit', (code) => void log().then((l) => reject(new Error(`clip snapshotter exited (${code}) before serving: ${l.slice(-3000)}`))));
  });
  return {
    pid: child.pid!,
    stdout,
    log,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]))) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
