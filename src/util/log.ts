import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured logs go to stderr so that stdout stays for command output (and --json).
 * Secrets are redacted by key wherever they appear.
 */
export function createLogger(level: string = process.env.CLIP_LOG_LEVEL ?? 'warn'): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['password', 'token', 'authorization', '*.password', '*.token', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything: the default for library calls that were given none. */
export const silentLogger: Logger = pino({ level: 'silent' });
