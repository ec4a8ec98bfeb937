/**
 * Numeric settings from an option or the environment. A bad one is the user's mistake, not a
 * crash and not a silent default: a ClipError (EINVAL) naming the variable (or option) and its
 * value, which the CLI prints as one line instead of a stack trace.
 */
import { ClipError } from './errors.js';

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
