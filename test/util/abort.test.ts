import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { untilAborted } from '../../src/util/abort.js';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('untilAborted', () => {
  it('settles with the promise, or rejects with the reason (or what onAbort makes of it) once the signal aborts', async () => {
    expect(await untilAborted(Promise.resolve(7), new AbortController().signal)).toBe(7);
    await expect(untilAborted(Promise.reject(new Error('own')), new AbortController().signal)).rejects.toThrow('own');
    const stop = new AbortController();
    const pending = untilAborted(new Promise<number>(() => undefined), stop.signal);
    stop.abort(new Error('stopped'));
    await expect(pending).rejects.toThrow('stopped');
    await expect(untilAborted(Promise.resolve(1), stop.signal, () => new Error('already'))).rejects.toThrow('already');
  });

  it('keeps nothing of what it settled with for a signal that lives on (as Promise.race with one would)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const stop = new AbortController(); // a mount's: not aborted until it ends
    const settled = async (): Promise<WeakRef<object>> => {
      const value = { windows: Buffer.alloc(1024) };
      expect(await untilAborted(Promise.resolve(value), stop.signal)).toBe(value);
      return new WeakRef(value);
    };
    const ref = await settled();
    await tick();
    gc();
    await tick();
    gc();
    expect(ref.deref()).toBeUndefined();
    expect(stop.signal.aborted).toBe(false);
  });
});
