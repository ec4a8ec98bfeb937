/**
 * The pool's decision of which reader thread reads blocking (src/fuse/solo-reads.ts): the soloist
 * is told only once every other thread has parked, and after a revoke the others are unparked only
 * once the soloist says it reads non-blocking again (a thread reading a blocking descriptor
 * non-blockingly would hang). Driven with threads that record what they are told; the clock is
 * the test's own.
 */
import { describe, expect, it } from 'vitest';
import type { ReaderControl } from '../../src/fuse/reader-worker.js';
import { SOLO_AFTER_QUEUE_MS, SoloReads } from '../../src/fuse/solo-reads.js';

class Told {
  readonly got: ReaderControl[] = [];
  tell(msg: ReaderControl): void {
    this.got.push(msg);
  }
  take(): string[] {
    return this.got.splice(0).map((m) => m.op);
  }
}

function pool(n: number): { threads: Told[]; solo: SoloReads<Told>; clock: { t: number } } {
  const threads = Array.from({ length: n }, () => new Told());
  const clock = { t: 10 * SOLO_AFTER_QUEUE_MS };
  return { threads, solo: new SoloReads(() => threads, () => clock.t), clock };
}

describe('solo reads', () => {
  it('grants a lone thread at once, and revokes through unsolo', () => {
    const { threads: [a], solo } = pool(1);
    solo.lone(a!, 7);
    expect(a!.got).toEqual([{ op: 'solo', fd: 7 }]);
    a!.take();
    solo.revoke(true);
    expect(a!.take()).toEqual(['unsolo']);
    solo.revoke(true); // already revoking: nothing more
    expect(a!.take()).toEqual([]);
  });

  it('parks every other thread before the soloist may block, and unparks them only after it let go', () => {
    const { threads: [a, b, c], solo } = pool(3);
    solo.lone(b!, 5);
    expect([a!.take(), b!.take(), c!.take()]).toEqual([['park'], [], ['park']]);
    solo.parked(a!);
    expect(b!.take()).toEqual([]); // c still watches the descriptor
    solo.parked(c!);
    expect(b!.take()).toEqual(['solo']);
    solo.revoke(true);
    expect([a!.take(), b!.take(), c!.take()]).toEqual([[], ['unsolo'], []]);
    solo.unsoloed(a!); // not the soloist
    expect(a!.take()).toEqual([]);
    solo.unsoloed(b!);
    expect([a!.take(), b!.take(), c!.take()]).toEqual([['unpark'], [], ['unpark']]);
  });

  it('a revoke while parking unparks at once, and the soloist is never told', () => {
    const { threads: [a, b], solo } = pool(2);
    solo.lone(a!, 5);
    expect(b!.take()).toEqual(['park']);
    solo.revoke(true);
    expect(b!.take()).toEqual(['unpark']);
    solo.parked(b!); // its late answer
    expect(a!.take()).toEqual([]);
  });

  it('no solo for a while after a queue, but at once after a revoke for another reason', () => {
    const { threads: [a], solo, clock } = pool(1);
    solo.revoke(false);
    solo.lone(a!, 3);
    expect(a!.take()).toEqual(['solo']);
    solo.revoke(true);
    expect(a!.take()).toEqual(['unsolo']);
    solo.unsoloed(a!);
    clock.t += SOLO_AFTER_QUEUE_MS - 1;
    solo.lone(a!, 3);
    expect(a!.take()).toEqual([]);
    clock.t += 1;
    solo.lone(a!, 3);
    expect(a!.take()).toEqual(['solo']);
  });

  it('a soloist that ends hands its descriptor back and the others watch again; a parker that ends is not waited for', () => {
    const { threads, solo } = pool(3);
    const [a, b, c] = threads;
    solo.lone(a!, 9);
    solo.parked(b!);
    threads.splice(2, 1); // c ended before it parked
    expect(solo.exited(c!)).toBeUndefined();
    expect(a!.take()).toEqual(['solo']);
    threads.splice(0, 1); // the soloist ended
    expect(solo.exited(a!)).toBe(9);
    expect(b!.take()).toEqual(['park', 'unpark']);
  });
});
