/**
 * The published index blob's packing: what a node inflates is exactly what was packed, in one
 * output buffer when the blob's gzip trailer tells its size, and a damaged blob fails naming it.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_INDEX_BYTES, packIndex, unpackChunkSize, unpackIndex } from '../../src/storage/index-artifact.js';

/** Bytes that compress like an index (names, modes, digests): text with random parts. */
function indexLike(bytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let n = 0; n < bytes; ) {
    const p = Buffer.from(`usr/lib/python3.11/module-${n}.py\0${randomBytes(8).toString('hex')}\0`);
    parts.push(p);
    n += p.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

describe('unpackIndex', () => {
  it('gives back the packed bytes, inflated into one buffer of the size the trailer announces', async () => {
    const bytes = indexLike(1_500_000);
    const packed = await packIndex(bytes);
    expect(unpackChunkSize(packed)).toBeGreaterThanOrEqual(bytes.length);
    expect(unpackChunkSize(packed)).toBeLessThan(bytes.length + 64 * 1024);
    expect((await unpackIndex(packed, 'blob')).equals(bytes)).toBe(true);
  });

  it('inflates an index larger than one output buffer whole', async () => {
    const bytes = Buffer.concat([indexLike(100_000), Buffer.alloc(40 * 1024 * 1024, 0x2f)]);
    const packed = await packIndex(bytes);
    expect(unpackChunkSize(packed)).toBeLessThan(bytes.length);
    expect((await unpackIndex(packed, 'blob')).equals(bytes)).toBe(true);
  });

  it('a trailer that lies about the size only sizes the buffer: the blob fails its own check, naming it', async () => {
    const packed = Buffer.from(await packIndex(indexLike(200_000)));
    packed.writeUInt32LE(0xffffffff, packed.length - 4);
    expect(unpackChunkSize(packed)).toBeLessThan(MAX_INDEX_BYTES);
    await expect(unpackIndex(packed, 'registry/x@sha256:ab')).rejects.toMatchObject({ code: 'ECORRUPT', object: 'registry/x@sha256:ab' });
    packed.writeUInt32LE(1, packed.length - 4);
    await expect(unpackIndex(packed, 'registry/x@sha256:ab')).rejects.toMatchObject({ code: 'ECORRUPT' });
  });

  it('a blob too short to have a trailer fails, naming it', async () => {
    const short = (await packIndex(indexLike(1000))).subarray(0, 12);
    await expect(unpackIndex(short, 'shared cache clip:index:x')).rejects.toMatchObject({ code: 'ECORRUPT', object: 'shared cache clip:index:x' });
  });
});
