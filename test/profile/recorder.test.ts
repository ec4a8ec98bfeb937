import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MERGE_WINDOW, PROCESS_MAX_RANGES, ProfileRecorder } from '../../src/profile/recorder.js';
import type { ProfileRange } from '../../src/profile/format.js';

describe('ProfileRecorder', () => {
  it('keeps first-access order, grows a range by the reads that continue it, drops repeats', () => {
    const r = new ProfileRecorder({ quietMs: 0 });
    r.note(1, 1000, 100, 5);
    r.note(0, 0, 4096, 9);
    r.note(1, 1100, 50, 5); // continues the first
    r.note(1, 1000, 100, 5); // read again
    r.note(0, 4096, 4096, 9); // continues the second
    r.note(1, 9000, 10, 6);
    const got = r.stop().map(({ atMs: _atMs, ...rest }) => rest);
    expect(got).toEqual([
      { layer: 1, offset: 1000, length: 150, ino: 5 },
      { layer: 0, offset: 0, length: 8192, ino: 9 },
      { layer: 1, offset: 9000, length: 10, ino: 6 },
    ]);
    expect(r.active).toBe(false);
    r.note(0, 50_000, 1, 1); // after the end: not recorded
    expect(r.recorded).toHaveLength(0); // handed over at the end, not kept
    expect(r.stop()).toEqual([]);
  });

  it('grows only recent ranges: a read continuing one older than the merge window starts a new range', () => {
    const r = new ProfileRecorder({ quietMs: 0 });
    r.note(0, 0, 10, 1);
    for (let i = 1; i <= MERGE_WINDOW; i++) r.note(1, i * 1000, 10, 2);
    r.note(1, MERGE_WINDOW * 1000 + 10, 10, 2); // continues the newest: grown
    r.note(0, 10, 10, 1); // continues the first, out of the window by now: a range of its own
    r.note(0, 0, 10, 1); // repeats the first: not known any more either
    const got = r.stop();
    expect(got).toHaveLength(MERGE_WINDOW + 3);
    expect(got[MERGE_WINDOW]).toMatchObject({ layer: 1, offset: MERGE_WINDOW * 1000, length: 20 });
    expect(got.slice(-2)).toMatchObject([{ layer: 0, offset: 10, length: 10 }, { layer: 0, offset: 0, length: 10 }]);
  });

  it('holds its ranges in columns: 20 000 ranges cost far less heap than objects in maps', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = (): number => {
      gc();
      const u = process.memoryUsage();
      return u.heapUsed + u.arrayBuffers; // the columns are ArrayBuffers
    };
    const r = new ProfileRecorder({ quietMs: 0, maxRanges: 30_000 });
    const before = heap();
    for (let i = 0; i < 20_000; i++) r.note(i % 3, i * 100_000, 4096, i);
    const held = heap() - before;
    // 40 bytes a range in columns plus the merge window's lookups; objects in maps took ~140.
    expect(held).toBeLessThan(20_000 * 70);
    expect(r.stop()).toHaveLength(20_000);
  });

  it('ends once reads go quiet, and at its bound of ranges, reporting why', async () => {
    const ends: [ProfileRange[], string][] = [];
    const quiet = new ProfileRecorder({ quietMs: 50, onEnd: (ranges, why) => ends.push([ranges, why]) });
    quiet.note(0, 0, 10, 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(quiet.active).toBe(false);
    expect(ends).toEqual([[[expect.objectContaining({ offset: 0, length: 10 })], 'quiet']]);

    const bounded = new ProfileRecorder({ quietMs: 0, maxRanges: 2, onEnd: (ranges, why) => ends.push([ranges, why]) });
    for (let i = 0; i < 5; i++) bounded.note(0, i * 100, 10, 1);
    expect(ends[1]![0]).toHaveLength(2);
    expect(ends[1]![1]).toBe('bound');
  });

  it('bounds the ranges of all recordings in the process: one that would go past it ends', () => {
    const ends: [number, string][] = [];
    const onEnd = (ranges: ProfileRange[], why: string): void => void ends.push([ranges.length, why]);
    const big = new ProfileRecorder({ quietMs: 0, maxRanges: PROCESS_MAX_RANGES * 2, onEnd });
    for (let i = 0; i < PROCESS_MAX_RANGES - 10; i++) big.note(0, i * 10, 5, 1);
    const second = new ProfileRecorder({ quietMs: 0, onEnd });
    for (let i = 0; i < 20; i++) second.note(0, i * 10, 5, 2);
    expect(ends).toEqual([[10, 'budget']]);
    expect(big.active).toBe(true);
    expect(big.stop()).toHaveLength(PROCESS_MAX_RANGES - 10);
    // What the ended recordings held is free again.
    const third = new ProfileRecorder({ quietMs: 0, onEnd });
    for (let i = 0; i < 100; i++) third.note(0, i * 10, 5, 3);
    expect(third.stop()).toHaveLength(100);
  });
});
