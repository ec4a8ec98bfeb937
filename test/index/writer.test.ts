import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoundsWriter, type BlockBound } from '../../src/archive/block-bounds.js';
import * as F from '../../src/index/format.js';
import { CHECKED_IN_PROCESS, ImageIndex } from '../../src/index/reader.js';
import { IndexBuilder, buildIndex, writeIndexFile } from '../../src/index/writer.js';
import { publishedForm, splitWindows } from '../../src/index/published.js';
import { isClipError } from '../../src/util/errors.js';
import { rec, reseal, section } from './crafted.js';
import { dir, file, metaOf, scanOf, sha256, symlink } from './layers.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-index-format-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A window with structure, so that compression has something to do, and random bytes, so that it cannot cheat. */
function windowOf(seed: number, length: number): Buffer {
  const w = Buffer.alloc(length);
  for (let i = 0; i < length; i++) w[i] = (i * 7 + seed) % 64;
  randomBytes(64).copy(w, length >> 1);
  return w;
}

function boundsOf(list: BlockBound[]): Buffer {
  const w = new BoundsWriter();
  for (const b of list) w.add(b);
  return w.finish();
}

function sample(): { bytes: Buffer; scans: ReturnType<typeof scanOf>[]; meta: ReturnType<typeof metaOf> } {
  const digests0 = Buffer.concat([1, 2, 3, 4, 5].map((i) => createHash('sha256').update(`c${i}`).digest()));
  const scans = [
    scanOf([dir('etc'), file('etc/os-release', { size: 100 }), symlink('bin', 'usr/bin')], 0, {
      checkpoints: [
        { out: 0, in: 10, bits: 0, window: Buffer.alloc(0) },
        { out: 2 * 1024 * 1024 + 17, in: 700_001, bits: 3, window: windowOf(1, 32768) },
        { out: 4 * 1024 * 1024 + 5, in: 1_400_000, bits: 7, window: windowOf(2, 32768) },
      ],
      chunkSize: 1 << 20,
      chunkDigests: digests0,
      compressedSize: 2_000_000,
      uncompressedSize: 5 * (1 << 20),
      bounds: boundsOf([{ out: 40_000, in: 12_000, bits: 2 }, { out: 2 * 1024 * 1024 + 17, in: 700_001, bits: 3 }, { out: 3_000_000, in: 1_000_000, bits: 0 }]),
    }),
    scanOf([file('etc/os-release', { size: 200, headerOffset: 512, dataOffset: 1024 })], 1, {
      compression: 'zstd',
      checkpoints: [{ out: 0, in: 0, bits: 0, window: Buffer.alloc(0) }],
      chunkSize: 4096,
      uncompressedSize: 4096,
      chunkDigests: createHash('sha256').update('only').digest(),
    }),
  ];
  const meta = metaOf(scans);
  meta.layers[1]!.mediaType = 'application/vnd.oci.image.layer.v1.tar+zstd';
  meta.platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };
  return { bytes: buildIndex(meta, scans), scans, meta };
}

describe('index file round trip', () => {
  it('keeps image metadata, config bytes, layers, checkpoints and chunk digests', async () => {
    const { bytes, scans, meta } = sample();
    const path = join(tmp, 'img.clipindex');
    await writeIndexFile(path, bytes);
    const idx = await ImageIndex.open(path);
    expect(idx.image).toEqual({
      reference: meta.reference, location: meta.location, manifestDigest: meta.manifestDigest,
      manifestMediaType: meta.manifestMediaType, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    expect(idx.config.equals(meta.config)).toBe(true);
    expect(idx.layers).toEqual(meta.layers.map((l, i) => ({
      ...l, chunkSize: scans[i]!.chunkSize, chunkCount: scans[i]!.chunkDigests.length / 32, checkpointCount: scans[i]!.checkpoints.length,
    })));
    expect(idx.layers[1]!.compression).toBe('zstd');
    for (let i = 0; i < 3; i++) expect(idx.chunkDigest(0, i)).toEqual(scans[0]!.chunkDigests.subarray(i * 32, i * 32 + 32));
    expect(idx.chunkDigest(1, 0)).toEqual(scans[1]!.chunkDigests);
    expect(idx.chunkSize(1)).toBe(4096);
    for (const [i, cp] of scans[0]!.checkpoints.entries()) {
      const got = idx.checkpoint(0, i);
      expect({ ...got, window: got.window.toString('hex') }).toEqual({ ...cp, window: cp.window.toString('hex') });
    }
    // The windows are stored compressed: the file is far smaller than two raw windows.
    expect(bytes.length).toBeLessThan(32768);
    expect(idx.resolvePath('/etc/os-release')).toBeGreaterThan(1);
    expect(idx.dataLocation(idx.resolvePath('/etc/os-release'))).toMatchObject({ layer: 1, size: 200 });
  });

  it('finds the nearest checkpoint at or before an offset', () => {
    const idx = new ImageIndex(sample().bytes, 'x');
    const mib = 1024 * 1024;
    const cases: Array<[number, number]> = [[0, 0], [1, 0], [2 * mib + 16, 0], [2 * mib + 17, 1], [4 * mib, 1], [4 * mib + 5, 2], [1e12, 2]];
    for (const [offset, want] of cases) {
      expect(idx.checkpointIndexBefore(0, offset)).toBe(want);
      expect(idx.checkpointBefore(0, offset).out).toBe([0, 2 * mib + 17, 4 * mib + 5][want]);
    }
    expect(idx.checkpointIndexBefore(1, 123)).toBe(0);
  });

  it('says what each checkpoint window costs stored, and the windows add up to their section', () => {
    const { bytes, scans } = sample();
    const idx = new ImageIndex(bytes, 'x');
    let sum = 0;
    for (const [l, scan] of scans.entries()) {
      for (const [i, cp] of scan.checkpoints.entries()) {
        const n = idx.checkpointWindowBytes(l, i);
        if (cp.window.length === 0) expect(n).toBe(0);
        else expect(n).toBeGreaterThan(0);
        sum += n;
      }
    }
    expect(sum).toBeGreaterThan(0);
    expect(idx.windowsBytes).toBe(sum);
  });

  it('answers out-of-range layer, chunk and checkpoint numbers with EINVAL', () => {
    const idx = new ImageIndex(sample().bytes, 'x');
    for (const fn of [() => idx.chunkDigest(0, 5), () => idx.chunkDigest(2, 0), () => idx.checkpoint(0, 3), () => idx.checkpointWindowBytes(0, 3), () => idx.chunkSize(-1)]) {
      expect(fn).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });

  it('refuses scans that do not match the layer list', () => {
    const { scans, meta } = sample();
    expect(() => buildIndex(meta, scans.slice(0, 1))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    const wrong = [{ ...scans[0]!, diffId: sha256('other') }, scans[1]!];
    expect(() => buildIndex(meta, wrong)).toThrow(expect.objectContaining({ code: 'EDIGEST', object: meta.layers[0]!.digest }));
  });
});

describe('damaged index files', () => {
  function expectCorrupt(bytes: Buffer, what: string): void {
    let err: unknown;
    try {
      new ImageIndex(bytes, '/cache/img.clipindex');
    } catch (e) {
      err = e;
    }
    expect(isClipError(err, 'ECORRUPT'), `${what}: ${String(err)}`).toBe(true);
    expect((err as Error).message).toContain('/cache/img.clipindex');
  }

  it('reports truncation at every section boundary, and at every length in the header, as ECORRUPT naming the file', () => {
    const { bytes } = sample();
    const count = bytes.readUInt32LE(12);
    const cuts = new Set<number>([0, 1, 7, 8, 12, 16, 23, 24, bytes.length - 32, bytes.length - 1]);
    for (let i = 0; i < count; i++) {
      const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
      const at = bytes.readDoubleLE(e + 8);
      cuts.add(e).add(at).add(at + bytes.readDoubleLE(e + 16)).add(at + 1);
    }
    for (const cut of cuts) if (cut < bytes.length) expectCorrupt(bytes.subarray(0, cut), `cut at ${cut}`);
    expectCorrupt(Buffer.concat([bytes, Buffer.alloc(1)]), 'one byte appended');
  });

  it('reports any flipped byte as ECORRUPT naming the file', () => {
    const { bytes } = sample();
    for (let i = 0; i < bytes.length; i++) {
      const bad = Buffer.from(bytes);
      bad[i] = bad[i]! ^ 0x10;
      expectCorrupt(bad, `flip at ${i}`);
    }
  });

  it('reports another format version clearly, not as damage', () => {
    const { bytes } = sample();
    const v5 = Buffer.from(bytes);
    v5.writeUInt32LE(5, 8);
    createHash('sha256').update(v5.subarray(0, v5.length - 32)).digest().copy(v5, v5.length - 32);
    expect(() => new ImageIndex(v5, 'v5.clipindex')).toThrow(expect.objectContaining({
      code: 'EUNSUPPORTED', message: expect.stringMatching(/v5\.clipindex: index format version 5, this clip reads versions 1, 2, 3, 4/),
    }));
  });

  it('writes version 4 with block boundaries; still reads version 3 (windows in the file, no digests) and 2 (no boundaries: fetches end at checkpoints)', () => {
    const { bytes, scans } = sample();
    const v4 = new ImageIndex(bytes, 'v4.clipindex');
    expect(v4.version).toBe(4);
    const v3bytes = Buffer.from(bytes);
    v3bytes.writeUInt32LE(3, 8);
    const v3 = new ImageIndex(reseal(v3bytes), 'v3.clipindex');
    expect(v3.version).toBe(3);
    expect(v3.windowsBlob).toBeUndefined();
    expect(v3.windowsAtHand).toBe(true);
    for (let l = 0; l < scans.length; l++) {
      for (let i = 0; i < scans[l]!.checkpoints.length; i++) expect(v3.checkpoint(l, i).window.equals(scans[l]!.checkpoints[i]!.window)).toBe(true);
    }
    const gz = scans.findIndex((s) => s.compression === 'gzip' && (s.bounds?.length ?? 0) > 0);
    expect(gz).toBeGreaterThanOrEqual(0);
    expect(v3.boundCount(gz)).toBeGreaterThan(0);
    // Every boundary the scan found is in the index, in order.
    expect(v3.boundCount(gz)).toBe(3);
    expect(v3.boundAtOrAfter(gz, 1)).toEqual({ out: 40_000, in: 12_000, bits: 2 });
    expect(v3.boundAtOrAfter(gz, 40_001)).toEqual({ out: 2 * 1024 * 1024 + 17, in: 700_001, bits: 3 });
    expect(v3.boundAtOrAfter(gz, 3_000_000)).toEqual({ out: 3_000_000, in: 1_000_000, bits: 0 });
    expect(v3.boundAtOrAfter(gz, scans[gz]!.uncompressedSize + 1)).toBeUndefined();
    // A version 2 file has no Bounds section (this one's is ignored): it opens, with none.
    const v2bytes = Buffer.from(bytes);
    v2bytes.writeUInt32LE(2, 8);
    const v2 = new ImageIndex(reseal(v2bytes), 'v2.clipindex');
    expect(v2.version).toBe(2);
    expect(v2.boundCount(gz)).toBe(0);
    expect(v2.boundAtOrAfter(gz, 1)).toBeUndefined();
  });

  it('a Bounds section that does not add up is ECORRUPT naming the file', () => {
    const b = Buffer.from(sample().bytes);
    const at = section(b, F.Section.Bounds);
    b.writeUInt32LE(0xfffffff, at);
    expect(() => new ImageIndex(reseal(b), 'bounds.clipindex')).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'bounds.clipindex', message: expect.stringMatching(/block boundary/) }));
  });

  it("reads bytes another thread checked (a reader thread's) without checking them, its bounds decoded when first asked", () => {
    const { bytes, scans } = sample();
    const gz = scans.findIndex((s) => s.compression === 'gzip' && (s.bounds?.length ?? 0) > 0);
    const checked = new ImageIndex(bytes, 'main.clipindex');
    const shared = new ImageIndex(bytes, 'thread.clipindex', CHECKED_IN_PROCESS);
    expect(shared.entryCount).toBe(checked.entryCount);
    expect(checked.lookup(checked.rootIno, 'etc')).toBeGreaterThan(0);
    expect(shared.lookup(shared.rootIno, 'etc')).toBe(checked.lookup(checked.rootIno, 'etc'));
    expect(shared.boundCount(gz)).toBe(3);
    expect(shared.boundAtOrAfter(gz, 40_001)).toEqual(checked.boundAtOrAfter(gz, 40_001));
    // A damaged table (the checksum not even looked at) fails where the thread first asks, named.
    const b = Buffer.from(bytes);
    b.writeUInt32LE(0xfffffff, section(b, F.Section.Bounds));
    const lazy = new ImageIndex(b, 'thread.clipindex', CHECKED_IN_PROCESS);
    expect(() => lazy.boundAtOrAfter(gz, 1)).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'thread.clipindex', message: expect.stringMatching(/block boundary/) }));
  });

  it('writes brotli windows, and still reads version 1 (deflated windows, no codec byte)', () => {
    const { bytes, scans } = sample();
    const v2 = new ImageIndex(bytes, 'v2.clipindex');
    const cps = section(bytes, F.Section.Checkpoints);
    expect(bytes.readUInt8(cps + F.CHECKPOINT_RECORD_SIZE + F.C_WIN_CODEC)).toBe(F.WindowCodec.Brotli);
    // A version 1 file: every window raw deflate, the codec byte padding (zero, as version 1 wrote it).
    const v1scans = scans.map((s) => ({
      ...s, checkpoints: s.checkpoints.map((c) => ({ ...c, window: Buffer.alloc(0), packed: { bytes: deflateRawSync(c.window, { level: 9 }), rawLength: c.window.length } })),
    }));
    const v1bytes = buildIndex(metaOf(v1scans), v1scans);
    v1bytes.writeUInt32LE(1, 8);
    const v1 = new ImageIndex(reseal(v1bytes), 'v1.clipindex');
    expect(v1.version).toBe(1);
    for (let l = 0; l < scans.length; l++) {
      for (let i = 0; i < scans[l]!.checkpoints.length; i++) {
        expect(v1.checkpoint(l, i).window.equals(scans[l]!.checkpoints[i]!.window)).toBe(true);
        expect(v2.checkpoint(l, i).window.equals(scans[l]!.checkpoints[i]!.window)).toBe(true);
      }
    }
    // Brotli keeps the windows smaller than deflate did.
    expect(bytes.length).toBeLessThan(v1bytes.length);
  });

  it('version 4 split for publishing: the eager part has no windows, takes each one fetched apart only against its digest', () => {
    const { bytes, scans } = sample();
    const { eager, windows } = splitWindows(bytes, 'whole.clipindex');
    expect(eager.length).toBeLessThan(bytes.length - windows!.length + 8);
    expect(splitWindows(eager).windows).toBeUndefined();
    // One index with or without its windows: named by the same published form (profiles, condemnations).
    expect(publishedForm(bytes).equals(eager)).toBe(true);
    expect(publishedForm(eager).equals(eager)).toBe(true);
    const lazy = new ImageIndex(eager, 'eager.clipindex');
    expect(lazy.windowsAtHand).toBe(false);
    expect(lazy.windowsBlob).toEqual({ digest: `sha256:${createHash('sha256').update(windows!).digest('hex')}`, size: windows!.length });
    let fetched = 0;
    for (let l = 0; l < scans.length; l++) {
      for (let i = 0; i < scans[l]!.checkpoints.length; i++) {
        const want = scans[l]!.checkpoints[i]!.window;
        expect(lazy.needsWindow(l, i)).toBe(want.length > 0);
        if (!lazy.needsWindow(l, i)) {
          expect(lazy.checkpoint(l, i).window.length).toBe(0);
          continue;
        }
        expect(() => lazy.checkpoint(l, i)).toThrow(expect.objectContaining({ code: 'ENOTFOUND', object: 'eager.clipindex' }));
        const { offset, length } = lazy.windowPlace(l, i);
        const packed = Buffer.from(windows!.subarray(offset, offset + length));
        expect(lazy.checkpointWith(l, i, packed).window.equals(want)).toBe(true);
        packed[0]! ^= 1;
        expect(() => lazy.checkpointWith(l, i, packed)).toThrow(expect.objectContaining({
          code: 'ECORRUPT', object: 'eager.clipindex', message: expect.stringContaining(`checkpoint ${i} window of layer ${scans[l]!.digest} does not match its digest`),
        }));
        fetched++;
      }
    }
    expect(fetched).toBeGreaterThan(0);
    // Window digests that do not match the checkpoints: ECORRUPT naming the file.
    const b = Buffer.from(bytes);
    b.writeDoubleLE(bytes.length, section(b, F.Section.WindowDigests) + F.DIGEST_SIZE);
    expect(() => new ImageIndex(reseal(b), 'sizes.clipindex')).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'sizes.clipindex' }));
  });

  it('a window that does not decode is ECORRUPT naming the file, when it is used', () => {
    const b = Buffer.from(sample().bytes);
    const at = section(b, F.Section.Windows) + b.readDoubleLE(section(b, F.Section.Checkpoints) + F.CHECKPOINT_RECORD_SIZE + F.C_WIN_OFF);
    b.fill(0xff, at, at + 16);
    const index = new ImageIndex(reseal(b), 'damaged.clipindex');
    expect(() => index.checkpoint(0, 1)).toThrow(expect.objectContaining({ code: 'ECORRUPT', object: 'damaged.clipindex', message: expect.stringMatching(/checkpoint 1 window/) }));
  });

  it('says which file is missing or is not an index at all', async () => {
    await expect(ImageIndex.open(join(tmp, 'absent.clipindex'))).rejects.toMatchObject({ code: 'ENOTFOUND', object: join(tmp, 'absent.clipindex') });
    const notIndex = join(tmp, 'config.json');
    await writeFile(notIndex, '{"not":"an index"}');
    await expect(ImageIndex.open(notIndex)).rejects.toThrow(/config\.json: not a clip index file/);
    // A FIFO would block the open (and the read) forever: refused at once, as is any non-regular file.
    const fifo = join(tmp, 'fifo.clipindex');
    execFileSync('mkfifo', [fifo]);
    await expect(ImageIndex.open(fifo)).rejects.toMatchObject({ code: 'EINVAL', object: fifo, message: expect.stringMatching(/not a regular file/) });
    await expect(ImageIndex.open(tmp)).rejects.toMatchObject({ code: 'EINVAL', object: tmp });
  }, 30_000);

  it('writes atomically: no temporary file is left, the result reads back', async () => {
    const path = join(tmp, 'atomic.clipindex');
    const { bytes } = sample();
    await writeIndexFile(path, bytes);
    await writeIndexFile(path, bytes);
    expect((await readFile(path)).equals(bytes)).toBe(true);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(tmp)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});

describe('inconsistent index files (valid checksum, wrong structure)', () => {
  const base = (): Buffer => Buffer.from(sample().bytes);
  // Records: 0 root, 1 bin, 2 etc, 3 etc/os-release (breadth first, sorted).

  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['a directory whose children run past the table', (b) => b.writeUInt32LE(99, rec(b, 2) + F.E_UNION2), /children out of order or bounds/],
    ['a directory listing itself as its child', (b) => b.writeUInt32LE(0, rec(b, 0) + F.E_UNION), /children out of order or bounds/],
    ['a parent that comes after its child', (b) => b.writeUInt32LE(b.readUInt32LE(rec(b, 3) + F.E_INO), rec(b, 2) + F.E_PARENT), /parent after it/],
    ['an inode slot pointing at another record', (b) => b.writeUInt32LE(2, section(b, F.Section.Inodes) + 4 * 2), /inode 2 points to a record of another inode/],
    ['a name past the string heap', (b) => b.writeUInt32LE(1e6, rec(b, 1) + F.E_NAME_OFF), /name out of bounds/],
    ['a file in a layer that does not exist', (b) => b.writeUInt16LE(7, rec(b, 3) + F.E_LAYER), /names layer 7/],
    ['an unknown file type', (b) => b.writeUInt32LE(0o140644, rec(b, 3) + F.E_MODE), /bad mode/],
    ['a checkpoint window past the window section', (b) => b.writeDoubleLE(1e9, section(b, F.Section.Checkpoints) + F.CHECKPOINT_RECORD_SIZE + F.C_WIN_OFF), /window out of bounds/],
    ['a window of an unknown codec', (b) => b.writeUInt8(9, section(b, F.Section.Checkpoints) + F.CHECKPOINT_RECORD_SIZE + F.C_WIN_CODEC), /window of unknown codec 9/],
    ['metadata without a reference', (b) => b.write('"referencX"', b.indexOf('"reference"', section(b, F.Section.Meta))), /metadata lacks required fields/],
  ];
  it.each(cases)('%s is ECORRUPT', (_what, damage, message) => {
    const b = base();
    damage(b);
    expect(() => new ImageIndex(reseal(b), 'edited.clipindex')).toThrow(expect.objectContaining({
      code: 'ECORRUPT', message: expect.stringMatching(message),
    }));
  });

  it('the same input gives the same bytes (stable inode numbers), whole or layer by layer', () => {
    const { scans, meta } = sample();
    const whole = buildIndex(meta, scans);
    expect(buildIndex(meta, scans).equals(whole)).toBe(true);
    const { layers, ...image } = meta;
    const builder = new IndexBuilder(image);
    scans.forEach((scan, i) => {
      builder.addLayer(layers[i]!, scan);
      scan.entries.length = 0; // the caller may drop a layer's entries once it is merged
    });
    expect(builder.build().equals(whole)).toBe(true);
  });
});
