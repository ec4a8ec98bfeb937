import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import type { DestinationStream, Logger, pino as Pino } from 'pino';
import { ClipError } from './errors.js';
import { lineLogger } from './line-log.js';

export type { Logger };

/**
 * Structured logs go to stderr so that stdout stays for command output (and --json).
 * Secrets are redacted by key wherever they appear.
 */
export function createLogger(level: string = process.env.CLIP_LOG_LEVEL ?? 'warn', fd = 2, format: string = process.env.CLIP_LOG_FORMAT ?? 'auto'): Logger {
  if (!LEVELS.includes(level)) throw new ClipError('EINVAL', `not a log level (use ${LEVELS.join(', ')})`, { object: level });
  if (!FORMATS.includes(format)) throw new ClipError('EINVAL', `not a log format (use ${FORMATS.join(', ')})`, { object: format });
  // People read a terminal; programs read files and pipes.
  const text = format === 'text' || (format === 'auto' && isatty(fd));
  // Loaded here, not with this module: the node's server logs without pino (createLineLogger).
  const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    new NeverFailingDestination(fd, text),
  );
}

/**
 * The same lines written without pino (src/util/line-log.ts): for the node's server, which would
 * otherwise carry pino's memory for a few lines a minute, and for `clip run` at its quiet default
 * levels, whose warm start would otherwise spend a good part of its time loading pino.
 */
export function createLineLogger(level: string = process.env.CLIP_LOG_LEVEL ?? 'warn', fd = 2, format = 'json'): Logger {
  if (!LEVELS.includes(level)) throw new ClipError('EINVAL', `not a log level (use ${LEVELS.join(', ')})`, { object: level });
  if (!FORMATS.includes(format)) throw new ClipError('EINVAL', `not a log format (use ${FORMATS.join(', ')})`, { object: format });
  const dest = new NeverFailingDestination(fd, format === 'text' || (format === 'auto' && isatty(fd)));
  return lineLogger(level, (line) => dest.write(line));
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const FORMATS = ['auto', 'json', 'text'];
const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A JSON log line as a person reads it: `WARN message key=value ...`, errors by their message. */
export function humanLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, time: _time, msg, ...rest } = rec;
  const fields = Object.entries(rest).map(([k, v]) => {
    const value = v && typeof v === 'object' && 'message' in v ? (v as { message: unknown }).message : v;
    return `${k}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`;
  });
  return `${[LEVEL_NAMES[level as number] ?? String(level), msg, ...fields].join(' ')}\n`;
}

/** How long a log line may wait on a full pipe (EAGAIN) before it is dropped. */
const BUSY_MS = 100;

/**
 * Synchronous writes to `fd` that never throw: a mount daemon's stderr is its log file, and a full
 * disk (ENOSPC) or a closed stderr must cost log lines, never the process that serves the mount.
 */
export class NeverFailingDestination implements DestinationStream {
  /** Log lines lost to write errors. */
  dropped = 0;

  constructor(private readonly fd: number, private readonly text = false) {}

  write(line: string): void {
    const buf = Buffer.from(this.text ? humanLine(line) : line);
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
export const silentLogger: Logger = lineLogger('silent', () => undefined);
