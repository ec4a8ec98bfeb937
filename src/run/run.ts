/**
 * `clip run`: prepare a container (container.ts), run it in the foreground with runc under clip's
 * own runc root, with this process's stdin, stdout and stderr (or a terminal with -t); forward
 * SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it; tear it down when it ends; and give
 * back its exit status (128+n for a death by signal n). A failure of runc itself (the command not
 * found, say) is reported with Docker's codes: 127 not found, 126 not runnable, 125 anything else.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { constants } from 'node:os';
import { ensurePrivateDir } from '../storage/cache-dir.js';
import { silentLogger } from '../util/log.js';
import { prepareContainer, teardownContainer, type ContainerRequest, type PreparedContainer } from './container.js';
import { runPaths } from './paths.js';

export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const;

export interface RunResult {
  id: string;
  /** The container's exit status (128+n for signal n), or 125-127 when it could not start. */
  code: number;
  /** Why the container could not start, when runc says so. */
  startError?: string;
  /** With --keep: the container's writable layer. */
  kept?: string;
}

export interface RunHooks {
  /** Called once the container's runc process is started. */
  onStart?: (prepared: PreparedContainer) => void;
}

export async function runContainer(req: ContainerRequest, hooks: RunHooks = {}): Promise<RunResult> {
  const log = req.logger ?? silentLogger;
  let pending: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (child?.pid !== undefined && child.exitCode === null) {
      log.debug({ signal: sig }, 'run: forwarding a signal to the container');
      child.kill(sig);
    } else pending ??= sig;
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  try {
    const prepared = await prepareContainer(req);
    if (pending) {
      await teardownContainer(req.cacheDir, prepared.id, { logger: log });
      return { id: prepared.id, code: 128 + constants.signals[pending] };
    }
    const runcRoot = runPaths(req.cacheDir).runcRoot;
    await ensurePrivateDir(runcRoot);
    const logFile = join(prepared.paths.dir, 'runc.log');
    let code: number;
    try {
      const proc = spawn('runc', ['--root', runcRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', prepared.bundle, prepared.id], {
        stdio: 'inherit',
        // Without a terminal, runc gets a process group of its own: a ^C reaches it once, from us.
        // With one, it must stay in the terminal's foreground group to read it.
        detached: req.tty !== true,
      });
      child = proc;
      const exited = new Promise<number>((resolveExit) => {
        proc.on('error', (err) => {
          log.error({ err }, 'run: cannot start runc');
          resolveExit(125);
        });
        proc.on('exit', (c, signal) => resolveExit(c ?? 128 + (signal ? constants.signals[signal] : 0)));
      });
      if (proc.pid !== undefined) hooks.onStart?.(prepared);
      log.debug({ id: prepared.id, sinceStartMs: Math.round(performance.now()) }, 'run: runc started');
      code = await exited;
      log.debug({ id: prepared.id, code, sinceStartMs: Math.round(performance.now()) }, 'run: runc exited');
    } catch (err) {
      await teardownContainer(req.cacheDir, prepared.id, { logger: log });
      throw err;
    }
    const startError = code !== 0 ? await runcFailure(logFile) : undefined;
    if (startError) code = /executable file not found|no such file or directory/i.test(startError) ? 127 : /permission denied/i.test(startError) ? 126 : 125;
    await teardownContainer(req.cacheDir, prepared.id, { logger: log, keep: req.keep === true, ...(req.lingerMs ? { lingerMs: req.lingerMs } : {}) });
    log.debug({ id: prepared.id, sinceStartMs: Math.round(performance.now()) }, 'run: torn down');
    return { id: prepared.id, code, ...(startError ? { startError } : {}), ...(req.keep ? { kept: prepared.paths.upper } : {}) };
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
  }
}

/** runc's own error, from its log, when it failed (rather than the container's process exiting non-zero). */
async function runcFailure(logFile: string): Promise<string | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  for (const line of text.split('\n').reverse()) {
    try {
      const rec = JSON.parse(line) as { level?: string; msg?: string };
      if ((rec.level === 'error' || rec.level === 'fatal') && rec.msg) return rec.msg.replace(/^runc run failed: /, '');
    } catch {
      // not a log record
    }
  }
  return undefined;
}
