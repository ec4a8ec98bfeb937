import { describe, expect, it } from 'vitest';
import { ReadBuffers } from '../../src/fs/read-buffers.js';

describe('READ buffers', () => {
  it('lends a buffer of the size asked and reuses it once given back, even as a view', () => {
    const pool = new ReadBuffers(1024, 2);
    const a = pool.take(1000);
    expect(a.length).toBe(1000);
    expect(pool.outstanding).toBe(1);
    pool.give(a.subarray(0, 10)); // the server may reply with a shorter view
    expect(pool.outstanding).toBe(0);
    const b = pool.take(512);
    expect(b.buffer).toBe(a.buffer);
    // Two lent at once never share memory.
    const c = pool.take(512);
    expect(c.buffer).not.toBe(b.buffer);
  });

  it('gives large requests their own buffer and keeps only a few free ones', () => {
    const pool = new ReadBuffers(1024, 1);
    const big = pool.take(4096);
    expect(big.length).toBe(4096);
    expect(pool.outstanding).toBe(0);
    pool.give(big); // not pooled: ignored
    const [x, y] = [pool.take(10), pool.take(10)];
    pool.give(x);
    pool.give(y);
    pool.give(y); // twice: ignored
    expect(pool.outstanding).toBe(0);
    const again = [pool.take(10), pool.take(10)];
    // Only one was kept: one of the two comes from the pool, the other is new.
    expect(again.filter((b) => b.buffer === x.buffer || b.buffer === y.buffer)).toHaveLength(1);
  });

  it('lends small READs an eighth of a pooled buffer, from a free list of their own', () => {
    const pool = new ReadBuffers(1024 * 1024, 4);
    const small = pool.take(4096);
    expect(small.length).toBe(4096);
    expect(small.buffer.byteLength).toBe(128 * 1024);
    const whole = pool.take(128 * 1024 + 1);
    expect(whole.buffer.byteLength).toBe(1024 * 1024);
    pool.give(small);
    pool.give(whole);
    expect(pool.take(100).buffer).toBe(small.buffer);
    expect(pool.take(512 * 1024).buffer).toBe(whole.buffer);
  });
});
