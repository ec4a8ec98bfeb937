/**
 * Crafted index files with valid trailers: each one passed the checks at load before they covered
 * the tree's shape and every field, then hung, crashed or over-allocated whoever read it. Each must
 * now fail at load with ECORRUPT naming the file.
 */
import { describe, expect, it } from 'vitest';
import * as F from '../../src/index/format.js';
import { ImageIndex } from '../../src/index/reader.js';
import { buildIndex } from '../../src/index/writer.js';
import type { LayerScan } from '../../src/archive/types.js';
import { rec, recordNamed, reseal, section } from './crafted.js';
import { dir, file, hardlink, metaOf, scanOf } from './layers.js';

// Root children, sorted: a (dir holding f), b (empty dir), h (file), h2 (hardlink to h).
const layer = (): LayerScan[] => [scanOf([dir('a'), file('a/f', { size: 10 }), dir('b'), file('h', { size: 20 }), hardlink('h2', 'h')])];
const pristine = (over: Partial<LayerScan> = {}): Buffer => {
  const scans = layer().map((s) => ({ ...s, ...over }));
  return buildIndex(metaOf(scans), scans);
};
const load = (b: Buffer): ImageIndex => new ImageIndex(reseal(b), 'crafted.clipindex');
const corrupt = (message: RegExp): ReturnType<typeof expect.objectContaining> => expect.objectContaining({ code: 'ECORRUPT', object: 'crafted.clipindex', message: expect.stringMatching(message) });
const layerRecord = (b: Buffer): number => section(b, F.Section.Layers);

describe('crafted index files are refused at load', () => {
  it('the pristine index loads (so each case below fails for its own edit)', () => {
    const idx = load(pristine());
    expect([...idx.walk()].map((e) => e.path)).toEqual(['/', '/a', '/a/f', '/b', '/h', '/h2']);
  });

  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['a second name of an inode turned into a directory that is the root (ls -R recursed forever)', (b) => {
      const at = rec(b, recordNamed(b, 'h2'));
      b.writeUInt32LE(1, at + F.E_INO);
      b.writeUInt32LE(0o40755, at + F.E_MODE);
      b.writeDoubleLE(0, at + F.E_SIZE);
      b.writeUInt32LE(0, at + F.E_UNION);
      b.writeUInt32LE(0, at + F.E_UNION2);
    }, /second name of inode 1/],
    ['an empty directory listing the children of another (reached twice)', (b) => {
      const a = rec(b, recordNamed(b, 'a'));
      const bb = rec(b, recordNamed(b, 'b'));
      b.writeUInt32LE(b.readUInt32LE(a + F.E_UNION), bb + F.E_UNION);
      b.writeUInt32LE(b.readUInt32LE(a + F.E_UNION2), bb + F.E_UNION2);
    }, /directories list 6 children for 5 records/],
    ['a NaN size (listings failed with EIO)', (b) => b.writeDoubleLE(NaN, rec(b, recordNamed(b, 'h')) + F.E_SIZE), /size NaN/],
    ['a negative size', (b) => b.writeDoubleLE(-1, rec(b, recordNamed(b, 'f')) + F.E_SIZE), /size -1/],
    ['an mtime of 1e300 (ls -l crashed)', (b) => b.writeDoubleLE(1e300, rec(b, recordNamed(b, 'h')) + F.E_SEC), /mtime 1e\+300/],
    ['nanoseconds of a second or more', (b) => b.writeUInt32LE(1e9, rec(b, recordNamed(b, 'h')) + F.E_NSEC), /mtime/],
    ['a file whose data runs past its layer', (b) => b.writeDoubleLE(1e6, rec(b, recordNamed(b, 'f')) + F.E_SIZE), /data .* lies outside its layer/],
    ['a file offset of Infinity', (b) => b.writeDoubleLE(Infinity, rec(b, recordNamed(b, 'f')) + F.E_UNION), /lies outside its layer/],
    ['a directory with a size', (b) => b.writeDoubleLE(4096, rec(b, recordNamed(b, 'b')) + F.E_SIZE), /directory record .* has size/],
    ['a FIFO with a size', (b) => { b.writeUInt32LE(0o10644, rec(b, recordNamed(b, 'f')) + F.E_MODE); }, /special file has size/],
    ['siblings out of name order (lookup misses them)', (b) => {
      const a = rec(b, recordNamed(b, 'a'));
      const bb = rec(b, recordNamed(b, 'b'));
      b.writeUInt32LE(b.readUInt32LE(bb + F.E_NAME_OFF), a + F.E_NAME_OFF);
    }, /out of name order/],
    ['a name that is ".."', (b) => {
      const at = rec(b, recordNamed(b, 'h2'));
      b.write('..', section(b, F.Section.Strings) + b.readUInt32LE(at + F.E_NAME_OFF), 'latin1');
    }, /"\.\." name/],
    ['a name holding "/"', (b) => {
      const at = rec(b, recordNamed(b, 'h2'));
      b.write('/', section(b, F.Section.Strings) + b.readUInt32LE(at + F.E_NAME_OFF) + 1, 'latin1');
    }, /holds "\/"/],
    ['mode bits beyond type and permissions', (b) => b.writeUInt32LE(0o100644 | 0o200000, rec(b, recordNamed(b, 'h')) + F.E_MODE), /bad mode/],
    ['chunk size 0 (reads spun the CPU)', (b) => b.writeUInt32LE(0, layerRecord(b) + F.L_CHUNK_SIZE), /chunk size 0 is not a power of two/],
    ['a chunk size that is not a power of two', (b) => b.writeUInt32LE(3 << 10, layerRecord(b) + F.L_CHUNK_SIZE), /chunk size 3072/],
    ['a chunk digest count that does not cover the layer', (b) => b.writeUInt32LE(0, layerRecord(b) + F.L_CHUNK_COUNT), /0 chunk digests for/],
    ['a layer without checkpoints', (b) => b.writeUInt32LE(0, layerRecord(b) + F.L_CP_COUNT), /checkpoints out of bounds/],
    ['a first checkpoint not at 0', (b) => b.writeDoubleLE(512, section(b, F.Section.Checkpoints) + F.C_OUT), /checkpoints not ascending from 0/],
    ['a checkpoint past the blob', (b) => b.writeDoubleLE(1e12, section(b, F.Section.Checkpoints) + F.C_IN), /input offset/],
    ['a checkpoint bit count over 7', (b) => b.writeUInt8(8, section(b, F.Section.Checkpoints) + F.C_BITS), /bad window/],
  ];
  it.each(cases)('%s', (_what, edit, message) => {
    const b = Buffer.from(pristine());
    edit(b);
    expect(() => load(b)).toThrow(corrupt(message));
  });

  it.each<[string, Partial<LayerScan>, RegExp]>([
    ['an uncompressed size of 1e13 (a 10 TB sparse cache file)', { uncompressedSize: 1e13, chunkSize: 2 ** 30 }, /uncompressed size 10000000000000 is out of range/],
    ['more uncompressed bytes than gzip can yield from the blob', { compressedSize: 100, uncompressedSize: 2 ** 30, chunkSize: 2 ** 30 }, /claims 1073741824 bytes uncompressed from 100 gzip bytes/],
    ['an uncompressed layer of another size than its blob', { compression: 'none', compressedSize: 4000 }, /uncompressed from 4000 none bytes/],
    ['an unknown compression', { compression: 'lz4' as 'gzip' }, /compression "lz4" is unknown/],
    ['a diff_id that is not a sha256 digest (it names a cache file)', { diffId: 'sha256:../../etc' }, /diff_id is not a sha256 digest/],
  ])('%s, written by the writer itself', (_what, over, message) => {
    const scans = layer().map((s) => ({ ...s, ...over }));
    // Chunk digests consistent with the claimed size, so that only the claim itself is wrong.
    for (const s of scans) s.chunkDigests = Buffer.alloc(Math.ceil(s.uncompressedSize / s.chunkSize) * 32, 7);
    expect(() => load(buildIndex(metaOf(scans), scans))).toThrow(corrupt(message));
  });
});
