export interface Deferred<T> {
  readonly promise: Promise<T>;
  readonly settled: boolean;
  resolve(value: T): void;
  reject(err: unknown): void;
}

/** A promise settled from outside; never reported as an unhandled rejection (its waiters handle it). */
export function deferred<T>(): Deferred<T> {
  let res!: (v: T) => void;
  let rej!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    res = a;
    rej = b;
  });
  promise.catch(() => {});
  let settled = false;
  return {
    promise,
    get settled() {
      return settled;
    },
    resolve(v) {
      if (settled) return;
      settled = true;
      res(v);
    },
    reject(e) {
      if (settled) return;
      settled = true;
      rej(e);
    },
  };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A signal that aborts after `ms` (reason: a TimeoutError, as AbortSignal.timeout's) or when any of
 * `signals` does. Not AbortSignal.any over AbortSignal.timeout: the composite holds its sources
 * weakly, and a timeout signal nobody else holds can be collected before it fires (Node 20), leaving
 * a read with no deadline. Here the timer holds the controller; done() releases both early.
 */
export function deadlineSignal(ms: number, ...signals: (AbortSignal | undefined)[]): { signal: AbortSignal; done(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms);
  const others = signals.filter((s): s is AbortSignal => s !== undefined);
  const onAbort = function (this: AbortSignal): void {
    controller.abort(this.reason);
  };
  const done = (): void => {
    clearTimeout(timer);
    for (const s of others) s.removeEventListener('abort', onAbort);
  };
  for (const s of others) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener('abort', onAbort, { once: true });
  }
  controller.signal.addEventListener('abort', done, { once: true });
  return { signal: controller.signal, done };
}
