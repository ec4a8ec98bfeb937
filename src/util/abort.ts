/** Waiting for a promise no longer than an abort signal allows. */

/**
 * `p`, or a rejection (with `onAbort(signal.reason)`, by default the reason itself) as soon as
 * `signal` aborts. The listener goes once `p` settles: a signal that lives on (a mount's) keeps
 * nothing of what `p` settled with, where Promise.race with a promise settled on abort would keep
 * it for the signal's life (a found profile: +2.3 MB a profiled mount, bench/server/RESULTS.md
 * session 11).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal, onAbort: (reason: unknown) => unknown = (r) => r): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(onAbort(signal.reason));
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}
