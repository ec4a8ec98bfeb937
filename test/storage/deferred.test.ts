/**
 * deadlineSignal: a read's deadline that cannot be lost. AbortSignal.any over AbortSignal.timeout
 * holds the timeout weakly; collected before it fired, it left a mount's read retrying a dead
 * registry past its deadline (test/mount/faults.test.ts saw it after unrelated changes moved GC).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { deadlineSignal } from '../../src/storage/deferred.js';

describe('deadlineSignal', () => {
  it('aborts with a TimeoutError after its time, whoever holds it', async () => {
    const { signal } = deadlineSignal(50);
    await sleep(150);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).name).toBe('TimeoutError');
  });

  it('aborts with the reason of any other signal first, and done() cancels the timer', async () => {
    const caller = new AbortController();
    const d = deadlineSignal(10_000, undefined, caller.signal);
    caller.abort(new Error('the request was interrupted'));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toBe('the request was interrupted');

    const already = new AbortController();
    already.abort(new Error('gone before'));
    expect((deadlineSignal(10_000, already.signal).signal.reason as Error).message).toBe('gone before');

    const quiet = deadlineSignal(50);
    quiet.done();
    await sleep(150);
    expect(quiet.signal.aborted).toBe(false);
  });
});
