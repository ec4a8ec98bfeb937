import { describe, expect, it } from 'vitest';
import { chunkCount, chunkLength, digestHex, layerRecord } from '../../src/storage/types.js';
import { runs } from '../../src/storage/storage.js';

const diffId = `sha256:${'ab'.repeat(32)}`;
const base = { diffId, digest: diffId, compression: 'none' as const, compressedSize: 10, uncompressedSize: 2500, chunkSize: 1024 };

describe('layer records', () => {
  it('cuts a layer into chunks, the last one short', () => {
    expect(chunkCount(base)).toBe(3);
    expect([0, 1, 2].map((i) => chunkLength(base, i))).toEqual([1024, 1024, 452]);
    expect(chunkCount({ ...base, uncompressedSize: 0 })).toBe(0);
  });

  it('hands out each chunk digest and refuses indexes out of range', () => {
    const digests = Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2), Buffer.alloc(32, 3)]);
    const rec = layerRecord({ ...base, chunkDigests: digests });
    expect(rec.chunkDigest(1)).toEqual(Buffer.alloc(32, 2));
    expect(() => rec.chunkDigest(3)).toThrow(/out of range/);
  });

  it('rejects inconsistent records with an error naming the layer', () => {
    expect(() => layerRecord({ ...base, chunkDigests: Buffer.alloc(64) })).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: diffId }));
    expect(() => layerRecord({ ...base, chunkSize: 1000, chunkDigests: Buffer.alloc(96) })).toThrow(
      expect.objectContaining({ code: 'EUNSUPPORTED' }),
    );
    expect(() => layerRecord({ ...base, diffId: 'sha256:xyz', chunkDigests: Buffer.alloc(96) })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => digestHex('md5:00')).toThrow(/not a sha256/);
  });

  it('groups adjacent chunks into runs', () => {
    expect(runs([])).toEqual([]);
    expect(runs([0, 1, 2, 5, 7, 8])).toEqual([
      [0, 2],
      [5, 5],
      [7, 8],
    ]);
  });
});
