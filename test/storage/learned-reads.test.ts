import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { LearnedCheckpoint } from '../../src/archive/learned-checkpoint.js';
import { LearnedCheckpoints } from '../../src/storage/learned-checkpoints.js';
import { learnedForReads, ReadChunks } from '../../src/storage/learned-reads.js';
import { layerRecord } from '../../src/storage/types.js';

const CS = 1024;
const layer = {
  ...layerRecord({ diffId: `sha256:${'a'.repeat(64)}`, digest: `sha256:${'b'.repeat(64)}`, compression: 'gzip', compressedSize: 4000, uncompressedSize: 10 * CS, chunkSize: CS, chunkDigests: Buffer.alloc(10 * 32) }),
};
const at = (out: number): LearnedCheckpoint => ({ out, inBits: out, window: Buffer.alloc(Math.min(out, 10)) });

describe('learned checkpoints a store keeps and picks', () => {
  it('picks the checkpoint at or before each run of chunks read and the one at or after its end', () => {
    const reads = new ReadChunks();
    reads.note(layer, 2, 2);
    reads.note(layer, 3, 4); // adjacent: one run 2..4
    reads.note(layer, 8, 8);
    expect(reads.runs(layer)).toEqual([[2, 4], [8, 8]]);
    const learned = [900, 2040, 2100, 3100, 5150, 5500, 7900, 9300].map(at);
    expect(learnedForReads(learned, reads.runs(layer), layer).map((c) => c.out)).toEqual([2040, 5150, 7900, 9300]);
    // A run that reaches the layer's end needs no end.
    expect(learnedForReads(learned, [[9, 9]], layer).map((c) => c.out)).toEqual([7900]);
  });

  it('keeps one per offset, in order, up to its bound; drops a range; finds the nearest either side', () => {
    const set = new LearnedCheckpoints(3);
    expect(set.add(layer, at(3000))).toBe(true);
    expect(set.add(layer, at(1000))).toBe(true);
    expect(set.add(layer, at(1000))).toBe(false);
    expect(set.add(layer, at(2000))).toBe(true);
    expect(set.full).toBe(true);
    expect(set.add(layer, at(4000))).toBe(false);
    expect(set.list(layer).map((c) => c.out)).toEqual([1000, 2000, 3000]);
    expect(set.atOrBefore(layer, 2999)?.checkpoint.out).toBe(2000);
    expect(set.atOrBefore(layer, 999)).toBeUndefined();
    expect(set.atOrAfter(layer, 2001)?.out).toBe(3000);
    expect(set.atOrAfter(layer, 3001)).toBeUndefined();
    // inBits 3000 is byte 375, bits 0; zran's convention for the others.
    expect(set.atOrAfter(layer, 2001)).toMatchObject({ in: 375, bits: 0 });
    expect(set.drop(layer, 1500, 3000)).toBe(2);
    expect(set.list(layer).map((c) => c.out)).toEqual([1000]);
    expect(set.full).toBe(false);
  });

  it('converts bit offsets as zran does: bits of byte in - 1 that belong to the next block', () => {
    const set = new LearnedCheckpoints();
    set.add(layer, { out: 5000, inBits: 8 * 100 - 3, window: Buffer.alloc(10) });
    expect(set.atOrBefore(layer, 5000)?.checkpoint).toMatchObject({ out: 5000, in: 100, bits: 3 });
  });

  it('keeps windows deflated once packed, and gives each back whole to the fetch that starts there', async () => {
    const set = new LearnedCheckpoints();
    // A window of text, as a layer's bytes mostly are: it deflates. No longer than the bytes
    // before its checkpoint (a longer one is refused as corrupt when it is unpacked).
    const text = Buffer.from('import json, email, http.client\n'.repeat(1000)).subarray(0, 2 * CS);
    set.add(layer, { out: 2 * CS, inBits: 800, window: text });
    set.add(layer, { out: 5 * CS, inBits: 1600, window: Buffer.alloc(0) }); // a member's start: nothing to pack
    expect(set.windowBytes(layer)).toBe(text.length);
    expect(set.atOrBefore(layer, 2 * CS)?.loadWindow).toBeUndefined();
    const saved = await set.pack();
    expect(saved).toBeGreaterThan(0);
    expect(set.windowBytes(layer)).toBe(text.length - saved);
    const start = set.atOrBefore(layer, 3 * CS)!;
    expect(start.checkpoint.window.length).toBe(0);
    const loaded = await start.loadWindow!();
    expect(loaded).toMatchObject({ out: 2 * CS, in: 100, bits: 0 });
    expect(loaded.window.equals(text)).toBe(true);
    // Listed (for a profile to record) as kept: the packed window deflated, the empty one as it is.
    expect(set.list(layer).map((c) => (c.packed ? inflateRawSync(c.packed) : c.window).equals(c.out === 2 * CS ? text : Buffer.alloc(0)))).toEqual([true, true]);
    expect(set.list(layer)[0]!.packed).toBeDefined();
    expect(set.atOrBefore(layer, 5 * CS)?.loadWindow).toBeUndefined();
  });
});
