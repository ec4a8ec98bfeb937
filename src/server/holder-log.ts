/**
 * The holder's log: JSON lines on stderr (the server's log file), in the shape pino writes them
 * (numeric level, time in ms, msg), so the holder's and the server's lines read alike. Not pino:
 * loading pino and its helpers costs a process about 7 MB of RSS, and the holder is meant to be
 * small (bench/server/RESULTS.md). Writes are synchronous and never throw: a full disk costs lines,
 * never the process that keeps every mount's descriptor.
 */
import { writeSync } from 'node:fs';
import type { Logger } from '../util/log.js';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

type Fields = Record<string, unknown>;
type Emit = (fields: Fields | string, msg?: string) => void;

export interface HolderLog {
  info: Emit;
  warn: Emit;
  error: Emit;
  fatal: Emit;
  /** For code typed for pino (fuse/attach.ts calls info and warn only). */
  asLogger(): Logger;
}

export function holderLog(level: string, base: Fields, fd = 2): HolderLog {
  const min = LEVELS[level] ?? LEVELS.info!;
  const at = (n: number): Emit => (fields, msg) => {
    if (n < min) return;
    const rec: Fields = { level: n, time: Date.now(), ...base, ...(typeof fields === 'string' ? {} : plain(fields)), msg: typeof fields === 'string' ? fields : msg };
    let line: string;
    try {
      line = `${JSON.stringify(rec)}\n`;
    } catch {
      line = `${JSON.stringify({ level: n, time: rec.time, ...base, msg: rec.msg })}\n`;
    }
    try {
      writeSync(fd, line);
    } catch {
      // a full disk or a closed stderr: the line is lost, the holder goes on
    }
  };
  const log = { info: at(30), warn: at(40), error: at(50), fatal: at(60) };
  return { ...log, asLogger: () => ({ ...log, debug: at(20), trace: at(10) }) as unknown as Logger };
}

/** Errors as pino's serializer gives them (JSON.stringify drops an Error's own fields). */
function plain(fields: Fields): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? { type: v.name, message: v.message, stack: v.stack, ...('code' in v ? { code: (v as { code: unknown }).code } : {}) } : v;
  }
  return out;
}
