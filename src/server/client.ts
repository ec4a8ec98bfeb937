/**
 * Talking to the node's server: one JSON request, one JSON reply over the control socket. A mount
 * starts the server (through its holder) when none runs; other requests never do.
 */
import { spawn } from 'node:child_process';
import { closeSync, watch, type FSWatcher } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ensurePrivateDir, openPrivateLogSync } from '../storage/cache-dir.js';
import { ClipError, type ErrorCode } from '../util/errors.js';
import { nodeArgs } from '../util/node-args.js';
import { siblingModule } from '../util/worker.js';
import { serverFiles } from './paths.js';
import type { ClientReply, ClientRequest } from './protocol.js';

/** How long a starting server may take before its socket answers. */
const START_MS = 20_000;

/** The server's reply, or undefined when no server runs (and `start` is false). */
export async function askServer(cacheDir: string, req: ClientRequest, opts: { start?: boolean } = {}): Promise<ClientReply | undefined> {
  const files = serverFiles(cacheDir);
  let reply = await exchange(files.socket, req);
  if (reply !== undefined || !opts.start) return reply;
  await startHolder(cacheDir);
  const until = Date.now() + START_MS;
  // The socket appearing in the run directory wakes the wait at once; the timer is the fallback.
  const created = watchDir(files.runDir);
  try {
    while (reply === undefined) {
      if (Date.now() > until) throw new ClipError('ETIMEOUT', `the clip server did not start within ${START_MS / 1000} s (see its log ${files.log})`, { object: cacheDir });
      await created.next(50);
      reply = await exchange(files.socket, req);
    }
  } finally {
    created.close();
  }
  return reply;
}

/**
 * Changes in `dir`: next(ms) settles at the next one (at once if one came since the last call),
 * or after ms (also when the directory cannot be watched).
 */
function watchDir(dir: string): { next(ms: number): Promise<void>; close(): void } {
  let changed = false;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, () => {
      changed = true;
      wake?.();
    });
    watcher.on('error', () => undefined);
  } catch {
    // no inotify here: the timer alone
  }
  return {
    next: (ms) => new Promise<void>((r) => {
      const timer = setTimeout(done, changed ? 0 : ms);
      function done(): void {
        clearTimeout(timer);
        changed = false;
        wake = undefined;
        r();
      }
      wake = done;
    }),
    close: () => watcher?.close(),
  };
}

/** Throw a failed reply as the error it names. */
export function unwrap<T extends ClientReply>(reply: T): Extract<T, { ok: true }> {
  if (!reply.ok) throw new ClipError((reply.code as ErrorCode | undefined) ?? 'EINVAL', reply.message);
  return reply as Extract<T, { ok: true }>;
}

/** Send one request; undefined when nothing listens (no socket, or a dead server's). */
function exchange(socket: string, req: ClientRequest): Promise<ClientReply | undefined> {
  return new Promise((resolve, reject) => {
    const sock = connect(socket);
    let text = '';
    let connected = false;
    sock.on('connect', () => {
      connected = true;
      sock.write(`${JSON.stringify(req)}\n`);
    });
    sock.on('data', (d: Buffer) => (text += d.toString()));
    sock.on('end', () => {
      try {
        resolve(JSON.parse(text) as ClientReply);
      } catch {
        reject(new ClipError('EINVAL', `the clip server gave no answer${text ? ` (${text.slice(0, 200)})` : ''}`, { object: socket }));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) resolve(undefined);
      else reject(new ClipError('EINVAL', `the clip server's socket failed: ${err.message}`, { object: socket, cause: err }));
    });
  });
}

/** Start the holder (which starts the server) detached, logging to the server's log. */
async function startHolder(cacheDir: string): Promise<void> {
  const files = serverFiles(cacheDir);
  await Promise.all([ensurePrivateDir(files.runDir), ensurePrivateDir(files.logDir)]);
  const module = fileURLToPath(siblingModule(import.meta.url, 'holder'));
  const log = openPrivateLogSync(files.log);
  try {
    const child = spawn(process.execPath, [...nodeArgs(module), module, cacheDir], {
      detached: true,
      cwd: '/', // hold no directory busy
      stdio: ['ignore', log, log],
      env: { ...process.env, CLIP_LOG_LEVEL: process.env.CLIP_LOG_LEVEL ?? 'info', CLIP_LOG_FORMAT: 'json' },
    });
    child.on('error', () => undefined);
    child.unref();
  } finally {
    closeSync(log);
  }
}

/** Whether a server kept running (`clip server start`) serves `cacheDir`; starts none. */
export async function keptServer(cacheDir: string): Promise<boolean> {
  const reply = await askServer(cacheDir, { op: 'status' }).catch(() => undefined);
  return reply?.ok === true && reply.op === 'status' && reply.stay;
}

/** Start the node's server for `cacheDir` if none runs, and wait until it answers; its pid. */
export async function ensureServer(cacheDir: string): Promise<number> {
  const reply = unwrap((await askServer(cacheDir, { op: 'status' }, { start: true }))!);
  return reply.pid;
}

/**
 * How often a holding process asks the server for its status: well within the 5 s a server without
 * mounts waits for a request before it ends.
 */
export const HOLD_INTERVAL_MS = 2000;

/**
 * Keep the node's server up while the caller runs (the snapshotter: the first container should not
 * pay for starting it): a status request every HOLD_INTERVAL_MS, starting the server again if it
 * ended. Returns stop().
 */
export function holdServer(cacheDir: string, onError: (err: unknown) => void = () => undefined): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    ensureServer(cacheDir).catch(onError).finally(() => {
      if (!stopped) timer = setTimeout(tick, HOLD_INTERVAL_MS);
    });
  };
  timer = setTimeout(tick, HOLD_INTERVAL_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
