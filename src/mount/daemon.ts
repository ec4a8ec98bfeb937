/**
 * The background mount's own process (started by startBackground): serves the mount, tells the
 * parent through fd 3 when it is ready or why it failed, and logs to the file its stderr goes to.
 * Its stdin is the MountConfig as JSON (not an argument: it may hold a password).
 */
import { closeSync, readFileSync, writeSync } from 'node:fs';
import { isClipError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { runMount } from './run.js';
import type { MountConfig } from './serve.js';

const READY_FD = 3;
// stdout and stderr are the log file: a write Node itself makes there (a warning) that fails on a
// full disk must not become an uncaught error that takes the mount down.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
const cfg = JSON.parse(readFileSync(0, 'utf8')) as MountConfig;
const logger = createLogger(cfg.logLevel ?? 'info');
let told = false;

function tell(line: string): void {
  if (told) return;
  told = true;
  try {
    writeSync(READY_FD, `${line}\n`);
    closeSync(READY_FD);
  } catch (err) {
    logger.warn({ err }, 'mount daemon: the parent is gone');
  }
}

logger.info({ pid: process.pid, image: cfg.image, mountpoint: cfg.mountpoint }, 'mount daemon: starting');
try {
  await runMount(cfg, { logger, onReady: (line) => tell(`ready ${line}`) });
  logger.info({ mountpoint: cfg.mountpoint }, 'mount daemon: exiting');
} catch (err) {
  logger.error({ err }, 'mount daemon: failed');
  tell(`error ${JSON.stringify({ code: isClipError(err) ? err.code : undefined, message: err instanceof Error ? err.message : String(err) })}`);
  process.exitCode = 1;
}
