import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import { ClipError } from './errors.js';

export type { Logger };

/**
 * Structured logs go to stderr so that stdout stays for command output (and --json).
 * Secrets are redacted by key wherever they appear.
 */
export function createLogger(level: string = process.env.CLIP_LOG_LEVEL ?? 'warn', fd = 2): Logger {
  if (!LEVELS.includes(level)) throw new ClipError('EINVAL', `not a log level (use ${LEVELS.join(', ')})`, { object: level });
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    new NeverFailingDestination(fd),
  );
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** How long a log line may wait on a full pipe (EAGAIN) before it is dropped. */
const BUSY_MS = 100;

/**
 * Synchronous writes to `fd` that never throw: a mount daemon's stderr is its log file, and a full
 * disk (ENOSPC) or a closed stderr must cost log lines, never the process that serves the mount.
 */
export class NeverFailingDestination implements DestinationStream {
  /** Log lines lost to write errors. */
  dropped = 0;

  constructor(private readonly fd: number) {}

  write(line: string): void {
    const buf = Buffer.from(line);
    let off = 0;
    const giveUp = Date.now() + BUSY_MS;
    while (off < buf.length) {
      try {
        off += writeSync(this.fd, buf, off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN' && Date.now() < giveUp) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
          continue;
        }
        this.dropped++;
        return;
      }
    }
  }
}

/** A logger that drops everything: the default for library calls that were given none. */
export const silentLogger: Logger = pino({ level: 'silent' });
