/**
 * The scan pool reuses a worker only when the worker itself ended its job: a job abandoned from
 * the caller's side (its input failed) leaves the worker mid-scan, and that scan's late reply (here
 * a limit it hit) must never be taken for the next job's.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ScanPool } from '../../src/archive/scan-pool.js';
import { ClipError } from '../../src/util/errors.js';
import { END, file } from './tar-builder.js';

const manyFiles = (n: number): Buffer => Buffer.concat([...Array.from({ length: n }, (_, i) => file(`f${i}`, `content ${i}\n`)), END]);

describe('the scan pool', () => {
  const pool = new ScanPool(1); // one worker: the second job gets the first one's worker
  afterAll(() => pool.close());

  it("a job whose input fails mid-stream does not hand its worker's late reply to the next job", async () => {
    const big = manyFiles(3000);
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(big); // more entries than its limit: the worker will say so, later
      throw new ClipError('ENETWORK', 'connection reset (test)', { object: 'layer-a' });
    }
    await expect(pool.scan(failing(), { compression: 'none', name: 'layer-a', maxEntries: 100 })).rejects.toMatchObject({ code: 'ENETWORK', object: 'layer-a' });
    const small = manyFiles(5);
    async function* whole(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(small);
    }
    const scan = await pool.scan(whole(), { compression: 'none', name: 'layer-b' });
    expect(scan.entries.map((e) => e.path)).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
    expect(scan.uncompressedSize).toBe(small.length);
  });
});
