/**
 * The logger of a command on `clip run`'s path: at info and below it is pino (many lines will be
 * written); at warn and above, where a run usually writes nothing, it is the line logger, so a
 * warm `clip run` does not pay for loading pino.
 */
import { createLineLogger, createLogger, type Logger } from '../util/log.js';

const QUIET_LEVELS = ['warn', 'error', 'fatal', 'silent'];

export function commandLogger(level: string = process.env.CLIP_LOG_LEVEL ?? 'warn', format: string = process.env.CLIP_LOG_FORMAT ?? 'auto'): Logger {
  // A bad level or format is refused by either, naming it.
  return QUIET_LEVELS.includes(level) ? createLineLogger(level, 2, format) : createLogger(level, 2, format);
}
