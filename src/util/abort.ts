/** Waiting for a promise no longer than an abort signal allows. */

/**
 * What `p` settles with, or undefined once `signal` aborts (nothing waits for a lookup still under
 * way: a slow registry). Not Promise.race with a promise settled on abort: that one stays pending,
 * from the signal, for the mount's life, and its reactions would keep the race's result (a mount's found
 * profile: +2.3 MB a profiled mount, bench/server/RESULTS.md session 11).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  return new Promise((resolve) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    void p.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    });
  });
}
