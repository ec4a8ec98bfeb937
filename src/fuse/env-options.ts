/**
 * The FUSE server's numeric settings, from an option or the environment. A bad one is the user's
 * mistake, not a crash: a ClipError (EINVAL) naming the variable (or option) and its value, which
 * the CLI prints as one line instead of a stack trace. No koffi here: the holder imports this.
 */
import { ClipError } from '../util/errors.js';

/** Where a setting came from: an option of the API, or else the environment variable. */
export interface Setting {
  /** The option's value, when the caller passed one. */
  value?: number;
  /** The option's name, for the message. */
  option?: string;
  /** The environment variable read when no option was passed. */
  env: string;
}

/**
 * A whole number from min to max, from the option if given, else from the environment (unset or
 * empty: undefined). `what` names the unit for the message ("pages", "ms").
 */
export function wholeNumberSetting(s: Setting, min: number, max: number, what: string): number | undefined {
  const raw = s.value !== undefined ? String(s.value) : process.env[s.env];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (Number.isSafeInteger(n) && n >= min && n <= max) return n;
  const name = s.value !== undefined ? (s.option ?? s.env) : s.env;
  throw new ClipError('EINVAL', `not a whole number of ${what} from ${min} to ${max}`, { object: `${name}=${raw}` });
}

/** How the reader threads behave, from the environment (benchmarks and tuning; see reader-pool.ts). */
export interface ThreadTuning {
  /** How long the last reader thread waits for a request before it ends (CLIP_FUSE_SLEEP_MS). */
  sleepMs: number;
  /** The scheduler slice a reader thread asks for, in ns (CLIP_FUSE_SLICE_US; 0: the kernel's default). */
  sliceNs: number;
  /** Requests a second from which a thread serving them alone says 'stream' (CLIP_FUSE_STREAM_RATE). */
  streamRate: number;
  /** Threads take turns on one client's stream of requests (CLIP_FUSE_TURNS=1). */
  turns: boolean;
}

const DEFAULT_SLEEP_MS = 120_000;
const DEFAULT_SLICE_US = 100;
const DEFAULT_STREAM_RATE = 2000;
/** The longest a Node timer waits (2^31 - 1 ms); a longer time would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Read when a connection's policy is made, so that a bad value fails the mount, not a thread. */
export function threadTuning(): ThreadTuning {
  const turns = process.env.CLIP_FUSE_TURNS;
  if (turns !== undefined && turns !== '' && turns !== '0' && turns !== '1') {
    throw new ClipError('EINVAL', 'not 0 or 1', { object: `CLIP_FUSE_TURNS=${turns}` });
  }
  return {
    sleepMs: wholeNumberSetting({ env: 'CLIP_FUSE_SLEEP_MS' }, 1, MAX_TIMER_MS, 'ms') ?? DEFAULT_SLEEP_MS,
    sliceNs: (wholeNumberSetting({ env: 'CLIP_FUSE_SLICE_US' }, 0, 1_000_000, 'µs') ?? DEFAULT_SLICE_US) * 1000,
    streamRate: wholeNumberSetting({ env: 'CLIP_FUSE_STREAM_RATE' }, 1, 1_000_000_000, 'requests a second') ?? DEFAULT_STREAM_RATE,
    turns: turns === '1',
  };
}
