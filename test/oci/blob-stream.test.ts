import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/util/log.js';
import { resumableRange, sliceChunks } from '../../src/oci/blob-stream.js';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

async function* chunked(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
const retry = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 };

describe('sliceChunks', () => {
  it.each([[0, 1000], [0, 0], [5, 10], [999, 1], [300, 700], [1, 2000]])('skip %i limit %i', async (skip, limit) => {
    expect((await collect(sliceChunks(chunked(data, 7), skip, limit))).equals(data.subarray(skip, skip + limit))).toBe(true);
  });
});

describe('resumableRange', () => {
  it('resumes where a broken body stopped, asking for the rest', async () => {
    const asked: [number, number][] = [];
    let breaks = 2;
    const open = async (start: number, end: number) => {
      asked.push([start, end]);
      const willBreak = breaks-- > 0;
      async function* broken(): AsyncGenerator<Buffer> {
        yield data.subarray(start, start + 100);
        throw Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
      }
      return { chunks: willBreak ? broken() : chunked(data.subarray(start, end), 64), close: () => undefined };
    };
    const got = await collect(resumableRange(open, 50, 900, { object: 'blob', retry, logger: silentLogger }));
    expect(got.equals(data.subarray(50, 900))).toBe(true);
    expect(asked).toEqual([[50, 900], [150, 900], [250, 900]]);
  });

  it('treats a body that ends short as an interruption, and gives up without progress', async () => {
    const open = async (start: number) => ({ chunks: chunked(Buffer.alloc(0), 1), close: () => void start });
    await expect(collect(resumableRange(open, 0, 10, { object: 'sha256:abc', retry, logger: silentLogger }))).rejects.toMatchObject({
      code: 'ENETWORK', message: expect.stringMatching(/sha256:abc.*interrupted 3 times/),
    });
  });

  it('does not resume on errors that are not transient', async () => {
    let opens = 0;
    const open = async () => {
      opens++;
      async function* failing(): AsyncGenerator<Buffer> {
        yield Buffer.alloc(0);
        throw new Error('bug');
      }
      return { chunks: failing(), close: () => undefined };
    };
    await expect(collect(resumableRange(open, 0, 10, { object: 'b', retry, logger: silentLogger }))).rejects.toThrow('bug');
    expect(opens).toBe(1);
  });
});

describe('backoffDelay', () => {
  it('grows exponentially with jitter inside [ceiling/2, ceiling], capped', async () => {
    const { backoffDelay } = await import('../../src/oci/registry-client.js');
    const r = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
    for (let attempt = 0; attempt < 6; attempt++) {
      const ceiling = Math.min(1000, 100 * 2 ** attempt);
      const samples = Array.from({ length: 50 }, () => backoffDelay(attempt, r));
      expect(Math.min(...samples)).toBeGreaterThanOrEqual(ceiling / 2);
      expect(Math.max(...samples)).toBeLessThanOrEqual(ceiling);
      expect(new Set(samples).size).toBeGreaterThan(1);
    }
  });
});
