/** Retry policy shared by registry and token requests: which failures are transient, and how long to wait. */
import { ClipError } from '../util/errors.js';

export interface RetryOptions {
  /** Attempts per request, the first included. */
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

const RETRY_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** Whether an error is a transient network failure worth another attempt. */
export function isTransientNetworkError(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown; name?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e instanceof ClipError) return e.code === 'ENETWORK' || e.code === 'ETIMEOUT';
    if (e.name === 'AbortError') return false;
    if (typeof e.code === 'string' && RETRY_CODES.has(e.code)) return true;
    if (e instanceof Error && /terminated|other side closed|premature close|socket hang up/i.test(e.message)) return true;
  }
  return false;
}

export function backoffDelay(attempt: number, retry: Required<RetryOptions>): number {
  const ceiling = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter": never zero, never in lockstep
}

/** How long a request may wait for a connection, for its response headers, and between body bytes. */
export interface TimeoutOptions {
  connectMs?: number;
  /** From request sent to response headers. */
  headersMs?: number;
  /** Longest silence while a body streams. */
  bodyIdleMs?: number;
}

/** Each wait a third of the default 30 s read deadline, so a stalled request is retried within it. */
export const DEFAULT_TIMEOUTS: Required<TimeoutOptions> = { connectMs: 10_000, headersMs: 10_000, bodyIdleMs: 10_000 };
const SHORTEST_WAIT_MS = 250;

/**
 * Waits that fit a read deadline: a connection that stalls (no answer, or a body gone silent) is
 * abandoned after a third of it, leaving time to retry, and resume by Range, before the deadline.
 */
export function timeoutsWithin(deadlineMs: number): Required<TimeoutOptions> {
  const wait = Math.max(SHORTEST_WAIT_MS, Math.round(deadlineMs / 3));
  return {
    connectMs: Math.min(wait, DEFAULT_TIMEOUTS.connectMs),
    headersMs: Math.min(wait, DEFAULT_TIMEOUTS.headersMs),
    bodyIdleMs: Math.min(wait, DEFAULT_TIMEOUTS.bodyIdleMs),
  };
}
