import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { layerMetaPath, presenceOffset } from '../../src/storage/layer-file.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { layerRecord, type LayerRecord } from '../../src/storage/types.js';
import { tempDir } from './helpers.js';

/** A layer held in memory (small), with its record. */
function memLayer(size: number, chunkSize: number): { data: Buffer; record: LayerRecord } {
  const data = randomBytes(size);
  const digests: Buffer[] = [];
  for (let o = 0; o < size; o += chunkSize) digests.push(createHash('sha256').update(data.subarray(o, o + chunkSize)).digest());
  const diffId = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  return {
    data,
    record: layerRecord({ diffId, digest: diffId, compression: 'none', compressedSize: size, uncompressedSize: size, chunkSize, chunkDigests: Buffer.concat(digests) }),
  };
}

describe('disk cache', () => {
  const dirs: string[] = [];
  const caches: DiskCache[] = [];
  afterEach(async () => {
    for (const c of caches.splice(0)) await c.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  async function open(opts: { maxBytes?: number } = {}): Promise<DiskCache> {
    const dir = await tempDir();
    dirs.push(dir);
    const c = await DiskCache.open({ dir, ...opts, metrics: new StorageMetrics() });
    caches.push(c);
    return c;
  }

  it('stores chunks in a sparse file named by diff_id and marks them present after writing', async () => {
    const cache = await open();
    const { data, record } = memLayer(10_000, 4096);
    const lease = await cache.acquire(record);
    expect(await lease.file.missing(0, 2)).toEqual([0, 1, 2]);
    await lease.file.writeChunk(1, data.subarray(4096, 8192));
    expect(await lease.file.missing(0, 2)).toEqual([0, 2]);
    const got = Buffer.alloc(100);
    await lease.file.read(got, 5000);
    expect(got).toEqual(data.subarray(5000, 5100));
    lease.release();

    const file = cache.pathOf(record);
    expect(file).toMatch(/layers\/sha256_[0-9a-f]{64}-[0-9a-f]{32}$/);
    const raw = await readFile(file);
    expect(raw.length).toBe(presenceOffset(10_000) + 3);
    expect([...raw.subarray(presenceOffset(10_000))]).toEqual([0, 12, 0]); // log2(4096) marks chunk 1
    expect((await stat(file)).blocks * 512).toBeLessThan(raw.length); // sparse: the holes take no space
    expect((await stat(cache.layersDir)).mode & 0o777).toBe(0o700);
  });

  it('sees chunks another handle (another process) filled, and ignores marks of another chunk size', async () => {
    const cache = await open();
    const other = await DiskCache.open({ dir: cache.dir });
    caches.push(other);
    const { data, record } = memLayer(8192, 4096);
    const a = await cache.acquire(record);
    expect(await a.file.missing(0, 1)).toEqual([0, 1]);
    const b = await other.acquire(record);
    await b.file.writeChunk(0, data.subarray(0, 4096));
    expect(await a.file.missing(0, 1)).toEqual([1]);

    const halfChunks = layerRecord({
      ...record,
      chunkSize: 2048,
      chunkDigests: Buffer.alloc(32 * 4),
    });
    const c = await other.acquire(halfChunks);
    expect(await c.file.missing(0, 3)).toEqual([0, 1, 2, 3]);
    a.release();
    b.release();
    c.release();
  });

  it('reports layers and allocated bytes, and evicts least recently used layers first', async () => {
    const cache = await open();
    const layers = [memLayer(64 * 1024, 16 * 1024), memLayer(64 * 1024, 16 * 1024), memLayer(64 * 1024, 16 * 1024)];
    for (const l of layers) {
      const lease = await cache.acquire(l.record);
      for (let i = 0; i < 4; i++) await lease.file.writeChunk(i, l.data.subarray(i * 16384, (i + 1) * 16384));
      lease.release();
    }
    // Layer 1 is the oldest in use, then 0, then 2.
    await utimes(cache.pathOf(layers[1]!.record), new Date(1000_000), new Date());
    await utimes(cache.pathOf(layers[0]!.record), new Date(2000_000), new Date());
    const before = await cache.stats();
    expect(before.layers).toBe(3);
    expect(before.bytes).toBeGreaterThanOrEqual(3 * 64 * 1024);

    const result = await cache.gc(before.bytes - 1);
    expect(result.evicted).toBe(1);
    expect((await cache.list()).map((l) => l.name).sort()).toEqual(
      [layers[0]!, layers[2]!].map((l) => path.basename(cache.pathOf(l.record))).sort(),
    );
    expect(await cache.gc(0)).toMatchObject({ evicted: 2, remainingBytes: 0 });
    expect(await cache.stats()).toMatchObject({ layers: 0, bytes: 0 });
  });

  it('counts what is written while a gc runs: a cap crossed meanwhile is enforced once that gc ends', async () => {
    // A gc whose listing is taken before two more layers are written, and which ends after them
    // (slow on a loaded machine): it finds the cache under its cap and evicts nothing.
    let letGo!: () => void;
    const gate = new Promise<void>((r) => (letGo = r));
    const original = DiskCache.prototype.list;
    const slowList = vi.spyOn(DiskCache.prototype, 'list').mockImplementationOnce(async function (this: DiskCache) {
      const listed = await original.call(this);
      await gate;
      return listed;
    });
    try {
      const cache = await open({ maxBytes: 160 * 1024 });
      const write = async (l: { data: Buffer; record: LayerRecord }): Promise<void> => {
        const lease = await cache.acquire(l.record);
        for (let i = 0; i < 4; i++) {
          await lease.file.writeChunk(i, l.data.subarray(i * 16384, (i + 1) * 16384));
          cache.noteWritten(16384);
        }
        lease.release();
      };
      await write(memLayer(64 * 1024, 16 * 1024)); // its first write starts the gc that sizes the cache
      expect(slowList).toHaveBeenCalledTimes(1);
      await write(memLayer(64 * 1024, 16 * 1024));
      await write(memLayer(64 * 1024, 16 * 1024));
      expect((await cache.stats()).bytes).toBeGreaterThan(160 * 1024);
      letGo();
      await cache.gc(); // the slow one; then the one the writes during it called for, if any
      await vi.waitUntil(async () => (await cache.stats()).bytes <= 160 * 1024, { timeout: 10_000 });
      expect((await cache.stats()).layers).toBe(2);
    } finally {
      letGo();
      slowList.mockRestore();
    }
  });

  it('never breaks a read in flight: an evicted layer stays readable through its open handle', async () => {
    const cache = await open();
    const { data, record } = memLayer(32 * 1024, 8192);
    const lease = await cache.acquire(record);
    for (let i = 0; i < 4; i++) await lease.file.writeChunk(i, data.subarray(i * 8192, (i + 1) * 8192));
    await cache.gc(0);
    await expect(stat(cache.pathOf(record))).rejects.toThrow(/ENOENT/);
    const got = Buffer.alloc(data.length);
    await lease.file.read(got, 0);
    expect(got).toEqual(data);
    lease.release();
    // The next use starts a fresh, empty file.
    const again = await cache.acquire(record);
    expect(await again.file.missing(0, 3)).toEqual([0, 1, 2, 3]);
    again.release();
  });

  it('describes each layer: size, chunks present of the total, last use; gc removes its metadata with it', async () => {
    const cache = await open();
    const a = memLayer(40_000, 4096); // 10 chunks
    const b = memLayer(9000, 1024); // 9 chunks
    const la = await cache.acquire(a.record);
    for (const i of [0, 3, 9]) await la.file.writeChunk(i, a.data.subarray(i * 4096, (i + 1) * 4096));
    la.release();
    const lb = await cache.acquire(b.record);
    lb.release();
    const rows = await cache.describe();
    const byId = new Map(rows.map((r) => [r.diffId, r]));
    expect(byId.get(a.record.diffId)).toMatchObject({ size: 40_000, chunkSize: 4096, presentChunks: 3, totalChunks: 10 });
    expect(byId.get(b.record.diffId)).toMatchObject({ size: 9000, chunkSize: 1024, presentChunks: 0, totalChunks: 9 });
    expect(byId.get(a.record.diffId)!.atimeMs).toBeGreaterThan(0);
    // Metadata that is missing or names another layer: the row stays, without chunk figures.
    await writeFile(layerMetaPath(cache.pathOf(b.record)), JSON.stringify({ diffId: a.record.diffId, uncompressedSize: 1, chunkSize: 1024 }));
    const other = (await cache.describe()).find((r) => r.diffId === b.record.diffId)!;
    expect(other.presentChunks).toBeUndefined();
    expect(other.size).toBeUndefined();
    // A temporary of a writer that died long ago goes with the next gc; so does metadata without a layer.
    const stale = path.join(cache.layersDir, `${path.basename(cache.pathOf(a.record))}.0badc0de.tmp`);
    await writeFile(stale, '{');
    await utimes(stale, new Date(0), new Date(0));
    expect(await cache.gc(0)).toMatchObject({ evicted: 2, remainingBytes: 0 });
    expect(await readdir(cache.layersDir)).toEqual([]);
  });
  it('writes chunks handed over while a write is under way together, data before marks, each byte in place', async () => {
    const cache = await open();
    const { data, record } = memLayer(20 * 4096 + 100, 4096);
    const lease = await cache.acquire(record);
    // Count the positioned writes of the file's handle (its class is node's FileHandle).
    const handle = await import('node:fs/promises').then((fs) => fs.open(path.join(cache.dir, 'probe'), 'w'));
    const proto = Object.getPrototypeOf(handle) as { write: (...a: unknown[]) => unknown; writev: (...a: unknown[]) => unknown };
    await handle.close();
    const order: string[] = [];
    const marksAt = presenceOffset(record.uncompressedSize);
    const spy = (name: 'write' | 'writev') => {
      const original = proto[name];
      return vi.spyOn(proto, name).mockImplementation(function (this: unknown, ...args: unknown[]) {
        const position = Number(name === 'writev' ? args[1] : args[3]);
        order.push(position >= marksAt ? 'mark' : 'data');
        return original.apply(this, args);
      });
    };
    const writes = [spy('write'), spy('writev')];
    try {
      // Chunks 2..9 and 12..20 (the last one short), handed over at once, one of them twice.
      const chunks = [...Array.from({ length: 8 }, (_, k) => 2 + k), ...Array.from({ length: 9 }, (_, k) => 12 + k), 5];
      await Promise.all(chunks.map((i) => lease.file.writeChunk(i, data.subarray(i * 4096, (i + 1) * 4096))));
    } finally {
      for (const w of writes) w.mockRestore();
    }
    // The first alone (nothing was under way), the rest together: two runs, a data write and a mark write each.
    expect(order.length, order.join(' ')).toBeLessThanOrEqual(6);
    expect(order.slice(0, 2)).toEqual(['data', 'mark']);
    expect(order.slice(2)).toEqual(['data', 'data', 'mark', 'mark']);
    expect(await lease.file.missing(0, 20)).toEqual([0, 1, 10, 11]);
    const got = Buffer.alloc(data.length);
    await lease.file.read(got, 0);
    for (const i of [2, 9, 12, 20]) expect(got.subarray(i * 4096, (i + 1) * 4096).equals(data.subarray(i * 4096, (i + 1) * 4096)), `chunk ${i}`).toBe(true);
    lease.release();
    // Another handle (another process) sees the same marks.
    const other = await DiskCache.open({ dir: cache.dir });
    caches.push(other);
    const b = await other.acquire(record);
    expect(await b.file.missing(0, 20)).toEqual([0, 1, 10, 11]);
    b.release();
  });
});
