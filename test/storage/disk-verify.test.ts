/**
 * The disk tier serves only verified bytes: a chunk marked present is checked against its sha256
 * on its first read in a process, and a cache file only ever holds bytes verified against one
 * chunk table (a crafted index that claims a victim's diff_id fills a file of its own).
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { Storage } from '../../src/storage/storage.js';
import { layerRecord } from '../../src/storage/types.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 64 * 1024;

describe('verification on the disk tier', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;
  const closing: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 6, bytesEach: 100_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
  });
  afterAll(async () => {
    for (const c of closing.splice(0)) await c();
    await rm(root, { recursive: true, force: true });
  });

  /** A store over `dir` as a fresh process would open it. */
  async function store(dir: string, source: ProbeSource, disk?: DiskCache): Promise<Storage> {
    const metrics = new StorageMetrics();
    const d = disk ?? (await DiskCache.open({ dir, metrics }));
    const s = new Storage({ disk: d, source, metrics, readTimeoutMs: 10_000, retryBackoffMs: 10, readaheadChunks: 0, statsIntervalMs: 0 });
    closing.push(() => d.close());
    return s;
  }

  it('a byte flipped in a cached chunk is a miss: counted, fetched again, repaired, never served', async () => {
    const dir = await tempDir();
    const warm = await store(dir, new ProbeSource([layer]));
    expect((await warm.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    await warm.disk.close();

    const file = warm.disk.pathOf(layer.record);
    const at = 2 * CHUNK + 777;
    const fh = await open(file, 'r+');
    await fh.write(Buffer.of(bytes[at]! ^ 0xff), 0, 1, at);
    await fh.close();

    const source = new ProbeSource([layer]);
    const s = await store(dir, source);
    // A 10-byte read around the flipped byte, then the whole layer.
    expect((await s.read(layer.record, at - 5, 10)).equals(bytes.subarray(at - 5, at + 5))).toBe(true);
    expect((await s.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    expect(source.calls).toEqual([[2 * CHUNK, 3 * CHUNK]]);
    const snap = await s.metrics.snapshot();
    expect(snap['verifyFailures.disk']).toBe(1);
    expect(snap['hits.disk']).toBeGreaterThan(0);
    // The chunk on disk was rewritten with the right bytes.
    const onDisk = Buffer.alloc(1);
    const check = await open(file, 'r');
    await check.read(onDisk, 0, 1, at);
    await check.close();
    expect(onDisk[0]).toBe(bytes[at]);
    await rm(dir, { recursive: true, force: true });
  });

  it('a chunk verified once in a process is served from disk without reading it whole again', async () => {
    const dir = await tempDir();
    const warm = await store(dir, new ProbeSource([layer]));
    await warm.read(layer.record, 0, bytes.length);
    await warm.disk.close();
    const source = new ProbeSource([layer]);
    const s = await store(dir, source);
    for (let k = 0; k < 3; k++) expect((await s.read(layer.record, CHUNK + 100, 4096)).equals(bytes.subarray(CHUNK + 100, CHUNK + 4196))).toBe(true);
    const snap = await s.metrics.snapshot();
    // One whole-chunk read to verify (counted as a disk request), then two plain reads of the range.
    expect(snap['requests.disk']).toBe(3);
    expect(snap['bytes.disk']).toBe(3 * 4096);
    expect(source.calls).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it('an index that claims the same diff_id with another chunk table fills its own file and never shares bytes', async () => {
    // The crafted layer: other bytes of the same size, with their own (self-consistent) chunk digests.
    const evil = randomBytes(bytes.length);
    const evilFile = path.join(root, 'evil.tar');
    await writeFile(evilFile, evil);
    const digests: Buffer[] = [];
    for (let o = 0; o < evil.length; o += CHUNK) digests.push(createHash('sha256').update(evil.subarray(o, o + CHUNK)).digest());
    const evilLayer: TestLayer = {
      file: evilFile,
      fields: layer.fields,
      record: layerRecord({ ...layer.fields, digest: layer.record.diffId, compression: 'none', compressedSize: evil.length, uncompressedSize: evil.length, chunkDigests: Buffer.concat(digests) }),
    };
    const dir = await tempDir();
    // One DiskCache shared by both stores (one server per node), and a second one (another process).
    const metrics = new StorageMetrics();
    const shared = await DiskCache.open({ dir, metrics });
    const attacker = await store(dir, new ProbeSource([evilLayer]), shared);
    expect((await attacker.read(evilLayer.record, 0, evil.length)).equals(evil)).toBe(true);

    const victimSource = new ProbeSource([layer]);
    const victim = await store(dir, victimSource, shared);
    const other = await store(dir, new ProbeSource([layer]));
    expect((await victim.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    expect((await other.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    // The attacker, reading again, still gets its own bytes, and the victim's file was filled from its source.
    expect((await attacker.read(evilLayer.record, 0, evil.length)).equals(evil)).toBe(true);
    expect(victimSource.calls.length).toBeGreaterThan(0);
    const files = (await readdir(path.join(dir, 'layers'))).filter((n) => !n.endsWith('.json'));
    expect(files.sort()).toEqual([path.basename(shared.pathOf(layer.record)), path.basename(shared.pathOf(evilLayer.record))].sort());
    expect(files[0]!.slice(0, 71)).toBe(files[1]!.slice(0, 71)); // same diff_id, different binding
    await rm(dir, { recursive: true, force: true });
  });

  it('does not follow a symlink planted where a layer file belongs; reads still succeed from the source', async () => {
    const dir = await tempDir();
    const s = await store(dir, new ProbeSource([layer]));
    const victim = path.join(root, 'victim-file');
    await writeFile(victim, 'root-owned content');
    await symlink(victim, s.disk.pathOf(layer.record));
    expect((await s.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    expect(await readFile(victim, 'utf8')).toBe('root-owned content');
    expect((await lstat(s.disk.pathOf(layer.record))).isSymbolicLink()).toBe(true);
    expect((await s.metrics.snapshot())['errors.disk']).toBeGreaterThan(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('gc removes layer files of the format that bound no chunk table (never trusted)', async () => {
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    closing.push(() => disk.close());
    const legacy = path.join(disk.layersDir, `sha256_${layer.record.diffId.slice(7)}`);
    await writeFile(legacy, bytes);
    await writeFile(`${legacy}.json`, '{}');
    await disk.gc();
    expect(await readdir(disk.layersDir)).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });
});
