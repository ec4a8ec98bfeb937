/**
 * A mount in the foreground of this process: mount, say so once, serve until SIGINT/SIGTERM/SIGHUP
 * (or `clip unmount`, which sends SIGTERM, or anyone's umount), then unmount and close cleanly.
 */
import { defaultCacheDir, ensurePrivateDir, isDiskFull } from '../storage/cache-dir.js';
import type { IndexProgress } from '../storage/indexer.js';
import { silentLogger, type Logger } from '../util/log.js';
import { abortConnection } from '../fuse/index.js';
import { mountFiles, removePidFile, writePidFile } from './files.js';
import { readyLine, startMount, type MountConfig, type RunningMount } from './serve.js';
import { keepStatus } from './status.js';

export interface RunOptions {
  logger?: Logger;
  /** Called once with the ready line when the mount serves. */
  onReady?: (line: string, running: RunningMount) => void;
  onProgress?: (e: IndexProgress) => void;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Serve `cfg` until told to stop; resolves when the mount is gone and everything is closed. */
export async function runMount(cfg: MountConfig, opts: RunOptions = {}): Promise<void> {
  const log = opts.logger ?? silentLogger;
  const files = mountFiles(cfg.cacheDir ?? defaultCacheDir(), cfg.mountpoint);
  // Before mounting: a cache directory others could write is refused while nothing is mounted yet.
  const filesDir = await ensurePrivateDir(files.dir).then(
    () => true,
    (err: unknown) => {
      if (!isDiskFull(err)) throw err;
      return false; // the mount can serve without its pid file (below)
    },
  );
  const running = await startMount(cfg, { logger: log, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    log.info({ signal: sig, mountpoint: running.mountpoint }, 'mount: stopping');
    if (signals === 1) {
      running.stop().catch((err: unknown) => log.error({ err }, 'mount: unmount failed'));
      return;
    }
    // Asked again: the user does not want to wait for a busy mount; cut the connection now.
    void abortConnection(running.mount.connection).catch(() => undefined);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  let stopStatus: (() => Promise<void>) | undefined;
  try {
    // A full disk must cost caching only: without its pid file the mount still serves, and
    // `clip unmount` unmounts it directly (this process then exits as after anyone's umount).
    const written = filesDir && (await writePidFile(files, running.mountpoint).then(() => true, (err: unknown) => {
      log.warn({ err }, 'mount: cannot write the pid file');
      return false;
    }));
    if (!written) log.warn({ file: files.pid }, 'mount: serving without a pid file (the cache disk is full?); clip unmount will unmount directly');
    stopStatus = filesDir ? keepStatus(files, running, (err) => log.debug({ err }, 'mount: cannot write its status')) : undefined;
    opts.onReady?.(readyLine(running), running);
    await running.done;
  } catch (err) {
    await running.stop().catch(() => undefined);
    throw err;
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
    await stopStatus?.().catch(() => undefined);
    await removePidFile(files).catch(() => undefined);
  }
}
