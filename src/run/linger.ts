/**
 * The linger of an image mount: after the last container of an image ends, its mount is kept for a
 * while (a reference `refs/linger` that counts as live until its time), so that the next `clip run`
 * of the image joins a serving mount instead of mounting it again. Nothing else runs by then, so a
 * small detached process, the reaper (linger-reaper.ts), waits for lingers to end and stops each
 * mount no container took meanwhile. One reaper per node (per cache directory), whatever the
 * number of lingering images: it holds `run/reaper.lock` and ends when no linger is left.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { silentLogger, type Logger } from '../util/log.js';
import { nodeArgs } from '../util/node-args.js';
import { siblingModule } from '../util/worker.js';
import { tryLock } from './lock.js';
import { runPaths } from './paths.js';

/** How long `clip run` keeps an image mounted after its last container ends, by default. */
export const DEFAULT_LINGER_MS = 60_000;

/**
 * Start the node's reaper unless one runs (it holds the reaper lock). Called holding the run lock,
 * which a reaper also takes before it decides to end: one that is ending has let its lock go first,
 * and one that runs sees the new linger on its next look.
 */
export async function ensureReaper(cacheDir: string, log: Logger = silentLogger): Promise<void> {
  const probe = tryLock(runPaths(cacheDir).reaper);
  if (!probe) return; // a reaper runs already; it reads the new linger
  probe.release();
  const module = fileURLToPath(siblingModule(import.meta.url, 'linger-reaper'));
  const child = spawn(process.execPath, [...nodeArgs(module), module, cacheDir], {
    detached: true,
    cwd: '/', // hold no directory busy
    stdio: 'ignore',
  });
  child.on('error', (err) => log.warn({ err, cacheDir }, 'run: cannot start the linger reaper; the next clip run or --cleanup stops lingering mounts'));
  child.unref();
}
