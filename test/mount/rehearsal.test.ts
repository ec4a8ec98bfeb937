/**
 * The kept server's rehearsal of a profiled cold start's read path (mount/rehearsal.ts): both
 * passes run through the real store (a checkpoint source, the disk cache, the profile's encoding
 * and the prefetch), the first node's learned checkpoints reach the next through the profile, and
 * nothing is left on disk.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rehearseColdStart } from '../../src/mount/rehearsal.js';

describe('rehearseColdStart', () => {
  let dir: string;
  let before: string | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-rehearsal-test-'));
    before = process.env.TMPDIR;
    process.env.TMPDIR = dir; // where its throwaway cache directory goes
  });
  afterEach(async () => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the layer through a first node and a profiled next node, and removes its cache directories', async () => {
    const first = await rehearseColdStart();
    // Learned in the first pass, carried by the profile, handed to the second.
    expect(first.learned).toBeGreaterThan(0);
    // The prefetch made whole chunks ready: at least what the reads it was planned from asked for.
    expect(first.prefetched).toBeGreaterThanOrEqual(first.bytesRead / 2);
    expect(first.prefetched % (64 * 1024)).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    // A second run in the same process (the server restarted by its holder) does the same.
    expect(await rehearseColdStart()).toEqual(first);
    expect(await readdir(dir)).toEqual([]);
  });
});
