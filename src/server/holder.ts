/**
 * The holder: one small, stable process per cache directory that owns every /dev/fuse descriptor
 * of the node's mounts and runs the server as its child. The kernel keeps a FUSE connection while
 * any process holds its descriptor, so when the server dies (crash, kill -9, OOM) or is replaced
 * (`clip server restart`), the mounts stay and a new server takes them over: it copies the
 * descriptors with pidfd_getfd and asks the kernel to resend what the dead one left unanswered.
 * The holder does little on purpose: mount, keep, restart with back-off, and give up cleanly.
 *
 * Started by the first `clip mount --background` or by `clip server start` (src/server/client.ts) as
 * `holder CACHE_DIR`.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { abortConnection, attach } from '../fuse/attach.js';
import { processStartTime } from '../mount/files.js';
import { ClipError } from '../util/errors.js';
import { holderLog } from './holder-log.js';
import { siblingModule } from '../util/worker.js';
import { nodeArgs } from '../util/node-args.js';
import { liveHolder, serverFiles } from './paths.js';
import type { HeldMount, ToHolder, ToServer } from './protocol.js';

/** Restarts within this window count toward the limit; past it the holder gives up. */
const CRASH_WINDOW_MS = 60_000;
const MAX_RESTARTS = 5;
/** A server that lived this long before dying counts as a fresh start, not as part of a crash loop. */
const STEADY_MS = 5000;
/**
 * V8 flags of the server, before any of ours (a later flag wins): young-generation semi-spaces of
 * 1 MB instead of up to 16 MB cut the idle server's RSS by about 8 MB, with no loss of read
 * throughput measured (bench/server/RESULTS.md); gc() for the idle collection (idle-memory.ts);
 * an interrupt budget 4x V8's, so that TurboFan optimizes only code that stays hot: a cold mount
 * runs much code once, and its optimizing took ~0.1 s of CPU from the start on two cores
 * (bench/index/RESULTS.md, session 17). CLIP_SERVER_V8_FLAGS replaces them (benchmarks).
 */
const SERVER_V8_FLAGS = (process.env.CLIP_SERVER_V8_FLAGS ?? '--max-semi-space-size=1 --expose-gc --interrupt-budget=540672').split(' ').filter(Boolean);

for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
const cacheDir = process.argv[2]!;
const files = serverFiles(cacheDir);
const log = holderLog(process.env.CLIP_LOG_LEVEL ?? 'info', { holder: process.pid });

if (!takeLock()) {
  log.info('holder: another holder serves this cache directory');
  process.exit(0);
}

const mounts = new Map<number, HeldMount>();
let nextId = 1;
let stopping = false;
/** The server said it exits to be replaced (clip server restart). */
let replacing = false;
let restarts = 0;
/** Started as a node's service (`clip server start`): no end when the last mount goes. */
let stay = false;
/** The server process now. */
let server: ChildProcess | undefined;
/** Mounts being made (mount(8) under way): not held yet, yet ending now would leave them dead. */
let attaching = 0;
const crashes: number[] = [];

startServer();
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  // Stopping the holder would end every mount: a signal ends it only when it holds none (a node's
  // service manager stopping a server that `clip server start` began).
  process.on(sig, () => {
    if (mounts.size > 0 || attaching > 0) {
      log.warn({ signal: sig, mounts: mounts.size, attaching }, 'holder: ignoring the signal while mounts are held (clip unmount them)');
      return;
    }
    log.info({ signal: sig }, 'holder: no mount held; stopping');
    stop();
  });
}

/** End the server, then the holder (on the server's exit). */
function stop(): void {
  stopping = true;
  if (server?.connected) send(server, { op: 'stop' });
  else finish();
}

function startServer(): void {
  const module = fileURLToPath(siblingModule(import.meta.url, 'main'));
  const child = fork(module, [cacheDir], { execArgv: [...SERVER_V8_FLAGS, ...nodeArgs(module)], cwd: '/', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  server = child;
  const startedAt = Date.now();
  child.on('message', (msg: ToHolder) => void onMessage(child, msg));
  child.on('error', (err) => log.error({ err }, 'holder: server process error'));
  child.on('exit', (code, signal) => {
    if (stopping) {
      finish();
      return;
    }
    if (replacing && (mounts.size > 0 || stay)) {
      replacing = false;
      restarts++;
      log.info({ pid: child.pid, mounts: mounts.size }, 'holder: replacing the server');
      startServer();
      return;
    }
    // Mounts never served (INIT unanswered) cannot be resumed: the kernel still waits for INIT,
    // which a new server would not know how it was asked. Drop them.
    for (const m of mounts.values()) if (!m.init) void drop(m, 'it was never served');
    log.error({ code, signal, pid: child.pid, ranMs: Date.now() - startedAt, mounts: mounts.size }, 'holder: the server died');
    if (mounts.size === 0 && !stay) {
      finish();
      return;
    }
    const now = Date.now();
    // A server that ran steadily before it died is not part of a loop: the count starts again.
    if (now - startedAt >= STEADY_MS) crashes.length = 0;
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_RESTARTS) {
      giveUp();
      return;
    }
    const delay = Math.min(5000, 100 * 2 ** (crashes.length - 1));
    log.warn({ delayMs: delay, restarts: restarts + 1 }, 'holder: restarting the server');
    setTimeout(() => {
      restarts++;
      startServer();
    }, delay);
  });
  send(child, { op: 'start', mounts: [...mounts.values()], restarts, stay });
}

async function onMessage(child: ChildProcess, msg: ToHolder): Promise<void> {
  switch (msg.op) {
    case 'attach':
      if (stopping) {
        // Told to stop meanwhile: a mount made now would be left dead when this holder ends.
        send(child, { op: 'attached', req: msg.req, error: { message: 'the clip server is stopping (clip server stop); mount again' } });
        return;
      }
      attaching++;
      try {
        const a = await attach(msg.mountpoint, { ...msg.options, logger: log.asLogger() });
        const held: HeldMount = { id: nextId++, fd: a.fd, mountpoint: a.mountpoint, connection: a.connection, major: a.major, config: msg.config };
        mounts.set(held.id, held);
        send(child, { op: 'attached', req: msg.req, mount: held });
      } catch (err) {
        const code = err instanceof ClipError ? err.code : undefined;
        send(child, { op: 'attached', req: msg.req, error: { ...(code ? { code } : {}), message: err instanceof Error ? err.message : String(err) } });
      } finally {
        attaching--;
      }
      return;
    case 'served': {
      const m = mounts.get(msg.id);
      if (m) {
        m.init = msg.init;
        if (msg.resolved) {
          const { mayIndex: _resolvedNow, ...config } = m.config;
          m.config = { ...config, resolved: msg.resolved };
        }
      }
      return;
    }
    case 'detach': {
      const m = mounts.get(msg.id);
      if (m) {
        mounts.delete(m.id);
        closeSync(m.fd);
      }
      return;
    }
    case 'restart':
      replacing = true;
      return;
    case 'stay':
      stay = msg.stay;
      return;
    case 'idle':
      if (mounts.size > 0 || attaching > 0 || stay) return;
      stop();
      return;
  }
}

function send(child: ChildProcess, msg: ToServer): void {
  if (child.connected) child.send(msg, (err) => err && log.warn({ err }, 'holder: cannot reach the server'));
}

/**
 * Abort a mount's connection and unmount it lazily: its readers get errors, never a hang.
 * Resolves when the unmount has been tried (the holder must not exit before: see giveUp).
 */
function drop(m: HeldMount, why: string): Promise<void> {
  log.error({ mountpoint: m.mountpoint, why }, 'holder: dropping the mount');
  mounts.delete(m.id);
  void abortConnection(m.connection).catch(() => undefined);
  try {
    closeSync(m.fd);
  } catch {
    // already closed
  }
  return lazyUnmount(m.mountpoint);
}

/** `umount -l`, tried again if it did not succeed (a slow or killed umount must not leave the mount). */
async function lazyUnmount(mountpoint: string): Promise<void> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const result = await new Promise<string>((done) =>
      spawn('umount', ['-l', mountpoint], { stdio: 'ignore' })
        .on('close', (code, signal) => done(code === 0 ? 'ok' : `code ${code ?? signal}`))
        .on('error', (err) => done(err.message)));
    if (result === 'ok') return;
    log.warn({ mountpoint, attempt, result }, 'holder: umount -l failed');
  }
}

function giveUp(): void {
  log.fatal({ crashes: crashes.length, windowMs: CRASH_WINDOW_MS, mounts: [...mounts.values()].map((m) => m.mountpoint) },
    'holder: the server keeps crashing; giving up: every mount is aborted (readers get ENOTCONN) and unmounted');
  // Exit only once every unmount has been tried: a holder that exited on a timer (it was 500 ms)
  // could leave mounts behind on a loaded machine. Bounded, so the holder never hangs here.
  const dropped = Promise.all([...mounts.values()].map((m) => drop(m, 'the server keeps crashing')));
  void Promise.race([dropped, new Promise((r) => setTimeout(r, 30_000))]).then(finish);
}

function finish(): void {
  releaseLock();
  rmSync(files.socket, { force: true });
  try {
    rmdirSync(files.runDir); // only if empty: another holder may have started there meanwhile
  } catch {
    // not empty, or gone
  }
  log.info('holder: exiting');
  process.exit(0);
}

/** One holder per cache directory: the lock names it by pid and start time (a reused pid is not it). */
function takeLock(): boolean {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(files.lock, `${process.pid}\n${processStartTime(process.pid) ?? ''}\n`, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // A holder that just ended removed the (empty) runtime directory: make it again.
        mkdirSync(files.runDir, { recursive: true, mode: 0o700 });
        continue;
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (liveHolder(files.lock) !== undefined) return false;
      rmSync(files.lock, { force: true });
    }
  }
  return false;
}

function releaseLock(): void {
  try {
    const [pid] = readFileSync(files.lock, 'utf8').split('\n');
    if (Number(pid) === process.pid) rmSync(files.lock, { force: true });
  } catch {
    // gone already
  }
}
