import { describe, expect, it } from 'vitest';
import { ProfileRecorder } from '../../src/profile/recorder.js';
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
    expect(r.recorded).toHaveLength(3);
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
    expect(bounded.recorded).toHaveLength(2);
    expect(ends[1]![1]).toBe('bound');
  });
});
