/**
 * Closing a store while chunks it fetched for nobody in particular (brought along by a wider fetch,
 * read ahead) are still arriving: within the grace they are written; after it they are abandoned
 * quietly. Before, the cache file was closed under them and every write logged "file closed".
 */
import { readFile, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { chunkCount, type LayerRecord, type LayerSource } from '../../src/storage/types.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 64 * 1024;

describe('closing a store with fetches in flight', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 8, bytesEach: 150_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  /** A source whose every request inflates the whole layer (one span), slowly. */
  function slowWholeLayer(): LayerSource {
    const probe = new ProbeSource([layer]);
    return {
      span: (l: LayerRecord) => ({ start: 0, end: l.uncompressedSize }),
      async readUncompressed(l, start, end, signal) {
        const body = await probe.readUncompressed(l, start, end, signal);
        return (async function* () {
          for await (const piece of body) {
            for (let o = 0; o < piece.length; o += 32 * 1024) {
              await sleep(5);
              yield piece.subarray(o, o + 32 * 1024);
            }
          }
        })();
      },
    };
  }

  async function opened(): Promise<{ storage: Storage; dir: string; warnings: string[] }> {
    const dir = await tempDir();
    const warnings: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l) warnings.push((JSON.parse(l) as { msg: string }).msg);
        done();
      },
    });
    const storage = new Storage({
      disk: await DiskCache.open({ dir }), source: slowWholeLayer(), logger: pino({ level: 'warn' }, sink), statsIntervalMs: 0, readaheadChunks: 0,
    });
    return { storage, dir, warnings };
  }

  async function cachedChunks(dir: string): Promise<number> {
    const disk = await DiskCache.open({ dir });
    const lease = await disk.acquire(layer.record);
    const count = chunkCount(layer.record);
    const missing = await lease.file.missing(0, count - 1);
    lease.release();
    await disk.close();
    return count - missing.length;
  }

  it('within the grace, every chunk the fetch brings along is written before the files close', async () => {
    const { storage, dir, warnings } = await opened();
    expect((await storage.read(layer.record, 0, 100)).equals(bytes.subarray(0, 100))).toBe(true);
    await storage.close({ flushMs: 10_000 });
    expect(warnings).toEqual([]);
    expect(await cachedChunks(dir)).toBe(chunkCount(layer.record));
    await rm(dir, { recursive: true, force: true });
  });

  it('without a grace, what is still arriving is abandoned without a warning, and close does not wait for it', async () => {
    const { storage, dir, warnings } = await opened();
    expect((await storage.read(layer.record, 0, 100)).equals(bytes.subarray(0, 100))).toBe(true);
    // That close did not wait shows in the chunks left missing below (waiting, it would have let the
    // fetch write the whole layer); a wall-clock bound on close() measured the machine's load.
    await storage.close();
    await sleep(300); // what a closed file would do to late writes shows by now
    expect(warnings).toEqual([]);
    const cached = await cachedChunks(dir);
    expect(cached).toBeGreaterThanOrEqual(1);
    expect(cached).toBeLessThan(chunkCount(layer.record));
    await rm(dir, { recursive: true, force: true });
  });
});
