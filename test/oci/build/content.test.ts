import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { seededBytes, seededStream } from '../../../src/oci/build/index.js';

async function collect(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('seeded content', () => {
  it('is exact in size and the same for the same seed, streamed or in memory', async () => {
    const size = 3 * 65536 + 17;
    const a = await collect(seededStream('s1', size, { compressible: 0.3 }));
    expect(a.length).toBe(size);
    expect(a.equals(seededBytes('s1', size, { compressible: 0.3 }))).toBe(true);
    expect(a.equals(seededBytes('s2', size, { compressible: 0.3 }))).toBe(false);
    expect(seededBytes('s1', 0).length).toBe(0);
  });

  it('compresses in proportion to its compressible share', () => {
    const size = 1 << 20;
    const ratio = (c: number): number => gzipSync(seededBytes('ratio', size, { compressible: c })).length / size;
    expect(ratio(0)).toBeGreaterThan(0.99);
    expect(ratio(1)).toBeLessThan(0.7);
    expect(ratio(0.5)).toBeGreaterThan(ratio(1));
    expect(ratio(0.5)).toBeLessThan(ratio(0));
  });
});
