/**
 * A small logger that writes JSON lines in the shape pino writes them (numeric level, time in ms,
 * the bindings of its parents, the fields, msg), for the node's server: loading pino and what it
 * loads costs a process about 8 MB of RSS (bench/server/RESULTS.md), and a server that logs a few
 * lines a minute needs none of it. Writes are synchronous and never throw (NeverFailingDestination);
 * secrets are redacted by key, and errors written with their type, message, stack and code.
 */
import type { Logger } from 'pino';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
/** Keys whose values never reach a log, at any depth (as createLogger's redaction). */
const SECRET = new Set(['password', 'token', 'authorization']);

type Fields = Record<string, unknown>;
type Write = (line: string) => void;

/** A pino-compatible logger at `level` writing lines with `write`; `bindings` go on every line. */
export function lineLogger(level: string, write: Write, bindings: Fields = {}): Logger {
  const min = LEVELS[level] ?? LEVELS.info!;
  const base = plain(bindings);
  const at = (n: number) => (first?: unknown, ...rest: unknown[]): void => {
    if (n < min) return;
    let fields: Fields = {};
    let msg: unknown;
    if (typeof first === 'string') msg = first;
    else if (first instanceof Error) {
      fields = { err: first };
      msg = typeof rest[0] === 'string' ? rest[0] : first.message;
    } else {
      if (first && typeof first === 'object') fields = first as Fields;
      msg = rest[0];
    }
    const rec: Fields = { level: n, time: Date.now(), ...base, ...plain(fields), ...(msg !== undefined ? { msg } : {}) };
    let line: string;
    try {
      line = JSON.stringify(rec, redact);
    } catch {
      line = JSON.stringify({ level: n, time: rec.time, ...base, msg });
    }
    write(`${line}\n`);
  };
  const log = {
    level,
    trace: at(10), debug: at(20), info: at(30), warn: at(40), error: at(50), fatal: at(60), silent: () => undefined,
    isLevelEnabled: (l: string) => (LEVELS[l] ?? Infinity) >= min,
    child: (more: Fields) => lineLogger(level, write, { ...bindings, ...more }),
  };
  return log as unknown as Logger;
}

function redact(key: string, value: unknown): unknown {
  if (SECRET.has(key.toLowerCase())) return '[redacted]';
  // JSON has no BigInt (stringify would throw and the line lose its fields): a number as pino writes it.
  return typeof value === 'bigint' ? Number(value) : value;
}

/** Errors as pino's serializer gives them (JSON.stringify drops an Error's own fields). */
function plain(fields: Fields): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? errorFields(v) : v;
  return out;
}

function errorFields(e: Error): Fields {
  const own: Fields = {};
  for (const [k, v] of Object.entries(e)) own[k] = v instanceof Error ? errorFields(v) : v;
  // `cause` given to the constructor is not enumerable, and it is often the error that explains.
  if (e.cause !== undefined && !('cause' in own)) own.cause = e.cause instanceof Error ? errorFields(e.cause) : e.cause;
  return { type: e.name, message: e.message, stack: e.stack, ...own };
}
