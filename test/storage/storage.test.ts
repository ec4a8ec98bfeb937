import { mkdir, readFile, rm } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { LayerFile } from '../../src/storage/layer-file.js';
import { StorageMetrics } from '../../src/storage/metrics.js';
import { Storage, WRITES_IN_FLIGHT } from '../../src/storage/storage.js';
import { chunkCount, type LayerRecord, type LayerSource } from '../../src/storage/types.js';
import { thrown, withEnv } from '../support/env.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 64 * 1024;

describe('the read path over disk and source', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;
  const opened: { storage: Storage; dir: string }[] = [];

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 12, bytesEach: 300_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
  });
  afterAll(async () => {
    for (const o of opened) {
      await o.storage.disk.close();
      await rm(o.dir, { recursive: true, force: true });
    }
    await rm(root, { recursive: true, force: true });
  });

  /** Read-ahead is off unless asked for, so that tests can count requests exactly. */
  async function make(source: LayerSource, opts: { readTimeoutMs?: number; maxBytes?: number; readaheadChunks?: number; coldReadaheadChunks?: number } = {}): Promise<Storage> {
    const dir = await tempDir();
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir, metrics, ...(opts.maxBytes ? { maxBytes: opts.maxBytes } : {}) });
    const storage = new Storage({
      disk,
      source,
      metrics,
      readTimeoutMs: opts.readTimeoutMs ?? 10_000,
      retryBackoffMs: 10,
      readaheadChunks: opts.readaheadChunks ?? 0,
      // These tests read ahead from the source (no remote cache here): cold read-ahead as asked.
      coldReadaheadChunks: opts.coldReadaheadChunks ?? opts.readaheadChunks ?? 0,
    });
    opened.push({ storage, dir });
    return storage;
  }

  it('serves any range byte-exact, fetching each missing run once and then from disk', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    const size = bytes.length;
    const ranges: [number, number][] = [
      [0, 512],
      [CHUNK - 10, 20],
      [3 * CHUNK + 5, 2 * CHUNK],
      [size - 700, 5000],
      [size, 10],
      [1_000_000, 0],
    ];
    for (const [off, len] of ranges) {
      expect((await s.read(layer.record, off, len)).equals(bytes.subarray(off, Math.min(off + len, size))), `${off}+${len}`).toBe(true);
    }
    // Chunk 0, chunks 0-1 minus 0, 3-5, the last chunk: each a single request from a chunk boundary.
    expect(source.calls).toEqual([
      [0, CHUNK],
      [CHUNK, 2 * CHUNK],
      [3 * CHUNK, 6 * CHUNK],
      [(chunkCount(layer.record) - 1) * CHUNK, size],
    ]);
    const before = source.calls.length;
    expect((await s.read(layer.record, 3 * CHUNK + 100, CHUNK)).equals(bytes.subarray(3 * CHUNK + 100, 4 * CHUNK + 100))).toBe(true);
    expect(source.calls.length).toBe(before);
    const snap = await s.metrics.snapshot();
    expect(snap['hits.disk']).toBeGreaterThanOrEqual(2);
    expect(snap['bytes.source']).toBe(5 * CHUNK + (size - (chunkCount(layer.record) - 1) * CHUNK));
  });

  it('any sequence of reads, over any mix of cached and missing chunks, returns the file bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: bytes.length + 100 }), fc.nat({ max: 5 * CHUNK })), { minLength: 1, maxLength: 8 }),
        async (reads) => {
          const s = await make(new ProbeSource([layer]));
          for (const [off, len] of reads) {
            const want = bytes.subarray(Math.min(off, bytes.length), Math.min(off + len, bytes.length));
            const got = await s.read(layer.record, off, len);
            if (!got.equals(want)) return false;
            const into = Buffer.alloc(len);
            const n = await s.readInto(layer.record, off, into);
            if (n !== want.length || !into.subarray(0, n).equals(want)) return false;
          }
          return true;
        },
      ),
      { numRuns: 25 },
    );
  });

  it('reads ahead of a sequential reader in batches, not one request per chunk', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source, { readaheadChunks: 4 });
    const piece = 16 * 1024;
    for (let off = 0; off < bytes.length; off += piece) {
      expect((await s.read(layer.record, off, piece)).equals(bytes.subarray(off, off + piece))).toBe(true);
    }
    const n = chunkCount(layer.record);
    const fetched = source.calls.flatMap(([a, b]) => Array.from({ length: Math.ceil((b - a) / CHUNK) }, (_, k) => a / CHUNK + k));
    expect(new Set(fetched).size).toBe(n);
    expect(fetched.length).toBe(n); // no chunk fetched twice
    expect(source.calls.length).toBeLessThanOrEqual(Math.ceil(n / 2) + 1);
    // A random reader gets no read-ahead.
    const random = new ProbeSource([layer]);
    const r = await make(random, { readaheadChunks: 4 });
    await r.read(layer.record, 9 * CHUNK, 10);
    await r.read(layer.record, 2 * CHUNK, 10);
    // The next chunk, but not where the last read ended: still random.
    await r.read(layer.record, 3 * CHUNK + 7, 10);
    expect(random.calls).toEqual([
      [9 * CHUNK, 10 * CHUNK],
      [2 * CHUNK, 3 * CHUNK],
      [3 * CHUNK, 4 * CHUNK],
    ]);
  });

  it('reads ahead from the source only as many chunks as coldReadaheadChunks allows', async () => {
    const piece = 16 * 1024;
    const readFirst = async (s: Storage): Promise<void> => {
      for (let off = 0; off < 3 * CHUNK; off += piece) expect((await s.read(layer.record, off, piece)).equals(bytes.subarray(off, off + piece))).toBe(true);
    };
    const none = new ProbeSource([layer]);
    await readFirst(await make(none, { readaheadChunks: 4, coldReadaheadChunks: 0 }));
    // Only the three chunks read, one request each.
    expect(none.calls).toEqual([
      [0, CHUNK],
      [CHUNK, 2 * CHUNK],
      [2 * CHUNK, 3 * CHUNK],
    ]);
    const two = new ProbeSource([layer]);
    const s = await make(two, { readaheadChunks: 4, coldReadaheadChunks: 2 });
    await readFirst(s);
    await s.flush(1000);
    const fetched = new Set(two.calls.flatMap(([a, b]) => Array.from({ length: Math.ceil((b - a) / CHUNK) }, (_, k) => a / CHUNK + k)));
    expect(Math.max(...fetched)).toBeGreaterThan(2);
    expect(Math.max(...fetched)).toBeLessThanOrEqual(2 + 2);
  });

  it('recognises two sequential readers of one layer whose reads interleave', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source, { readaheadChunks: 4 });
    const piece = 32 * 1024;
    const starts = [0, 30 * CHUNK];
    for (let k = 0; k < (8 * CHUNK) / piece; k++) {
      for (const at of starts) {
        const off = at + k * piece;
        expect((await s.read(layer.record, off, piece)).equals(bytes.subarray(off, off + piece))).toBe(true);
      }
    }
    // 16 chunks read, one request each without read-ahead; with it, each reader's misses come in batches.
    expect(source.calls.length).toBeLessThanOrEqual(12);
    expect(source.calls.some(([a, b]) => b - a > CHUNK && a >= 30 * CHUNK)).toBe(true);
    expect(source.calls.some(([a, b]) => b - a > CHUNK && a < 30 * CHUNK)).toBe(true);
  });

  it('merges adjacent misses into one request and skips chunks already on disk', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    await s.read(layer.record, 2 * CHUNK, 1);
    await s.read(layer.record, 0, 5 * CHUNK);
    expect(source.calls).toEqual([
      [2 * CHUNK, 3 * CHUNK],
      [0, 2 * CHUNK],
      [3 * CHUNK, 5 * CHUNK],
    ]);
  });

  it('singleflight: 50 concurrent readers of a cold layer cause one source request per needed range', async () => {
    const source = new ProbeSource([layer]);
    source.delayMs = 50;
    const s = await make(source);
    const size = bytes.length;
    const reads = Array.from({ length: 50 }, (_, k) => {
      const off = (k % 5) * 101 + (k % 2) * CHUNK; // all inside chunks 0-1
      return s.read(layer.record, off, CHUNK).then((b) => expect(b.equals(bytes.subarray(off, Math.min(off + CHUNK, size)))).toBe(true));
    });
    await Promise.all(reads);
    // Readers of chunk 0 alone start first; readers of chunks 0-2 join chunk 0 and fetch the rest once.
    const fetched = source.calls.flatMap(([a, b]) => Array.from({ length: (b - a) / CHUNK }, (_, k) => a / CHUNK + k));
    expect(fetched.sort()).toEqual([0, 1, 2]);
    expect((await s.metrics.snapshot()).singleflightJoins).toBeGreaterThanOrEqual(47);
  });

  it('keeps many chunk fetches in flight at once without a listener-leak warning on its close signal', async () => {
    const source = new ProbeSource([layer]);
    source.delayMs = 50;
    const s = await make(source);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const offs = Array.from({ length: 16 }, (_, k) => k * 3 * CHUNK); // 16 chunks apart: 16 fetches
      const got = await Promise.all(offs.map((off) => s.read(layer.record, off, 100)));
      got.forEach((b, k) => expect(b.equals(bytes.subarray(offs[k]!, offs[k]! + 100))).toBe(true));
      expect(source.calls).toHaveLength(16);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  });

  it('retries a corrupted or cut-off response and serves right bytes, counting the failure', async () => {
    const source = new ProbeSource([layer]);
    source.mode = 'corrupt-once';
    const s = await make(source);
    expect((await s.read(layer.record, 10, 3 * CHUNK)).equals(bytes.subarray(10, 10 + 3 * CHUNK))).toBe(true);
    expect(source.calls).toEqual([
      [0, 4 * CHUNK],
      [0, CHUNK],
    ]);
    expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(1);

    source.mode = 'truncate-once';
    expect((await s.read(layer.record, 8 * CHUNK, 4 * CHUNK)).equals(bytes.subarray(8 * CHUNK, 12 * CHUNK))).toBe(true);
    expect(source.calls.slice(2)).toEqual([
      [8 * CHUNK, 12 * CHUNK],
      [10 * CHUNK, 12 * CHUNK],
    ]);
  });

  it('fails with EDIGEST when the source keeps sending wrong bytes, and caches nothing wrong', async () => {
    const source = new ProbeSource([layer]);
    source.mode = 'corrupt';
    const s = await make(source);
    await expect(s.read(layer.record, 0, 100)).rejects.toMatchObject({ code: 'EDIGEST', object: layer.record.diffId });
    expect(source.calls.length).toBe(2);
    const lease = await s.disk.acquire(layer.record);
    expect(await lease.file.missing(0, 0)).toEqual([0]);
    lease.release();
    source.mode = 'ok';
    expect((await s.read(layer.record, 0, 100)).equals(bytes.subarray(0, 100))).toBe(true);
  });

  it('fails with ETIMEOUT after the read deadline when the source hangs, and ENETWORK-coded causes when it is down', async () => {
    const source = new ProbeSource([layer]);
    source.mode = 'hang';
    const s = await make(source, { readTimeoutMs: 300 });
    await expect(s.read(layer.record, 0, 10)).rejects.toMatchObject({ code: 'ETIMEOUT' });
    source.mode = 'down';
    const err = await s.read(layer.record, CHUNK, 10).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ETIMEOUT' });
    expect((err as Error & { cause?: { code?: string } }).cause?.code).toBe('ENETWORK');
    expect(source.calls.length).toBeGreaterThan(2); // retried until the deadline
  });

  it('streams a large range in windows, byte-exact', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    const got = await buffer(s.stream(layer.record, 1234, bytes.length, { windowBytes: 3 * CHUNK }));
    expect(got.equals(bytes.subarray(1234))).toBe(true);
  });

  it('completes a whole layer in the background; afterwards the source is never asked', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    await s.read(layer.record, 5 * CHUNK, 10);
    await s.complete(layer.record, { windowChunks: 4 });
    source.mode = 'down';
    expect((await s.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
  });

  it('reads through when the cache file cannot be opened, instead of failing', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    await mkdir(s.disk.pathOf(layer.record)); // a directory where the layer file belongs: EISDIR
    for (let k = 0; k < 2; k++) expect((await s.read(layer.record, 1000, 2 * CHUNK)).equals(bytes.subarray(1000, 1000 + 2 * CHUNK))).toBe(true);
    const snap = await s.metrics.snapshot();
    expect(snap['errors.disk']).toBeGreaterThanOrEqual(2);
    expect(source.calls.length).toBe(2); // nothing cached, so each read goes to the source
  });

  it('evicts under a size cap while a read is in flight, without breaking it', async () => {
    const other = await makeTarLayer(root, { files: 4, bytesEach: 200_000, chunkSize: CHUNK, name: 'other' });
    const source = new ProbeSource([layer, other]);
    const s = await make(source, { maxBytes: bytes.length });
    await s.read(other.record, 0, 800_000); // other is cached, and older
    source.delayMs = 100;
    const inFlight = s.read(layer.record, 0, bytes.length);
    // While the big read waits on the source, filling it pushes the cache over its cap.
    const got = await inFlight;
    expect(got.equals(bytes)).toBe(true);
    await s.disk.gc(); // let any background gc finish
    const snap = await s.metrics.snapshot();
    expect(snap.evictions).toBeGreaterThanOrEqual(1);
    expect((await s.disk.stats()).bytes).toBeLessThanOrEqual(bytes.length + 4096 * 2);
    expect((await s.read(layer.record, 100, 1000)).equals(bytes.subarray(100, 1100))).toBe(true);
  });

  it('goes on reading the source while fetched chunks are written to disk, and returns them once written', async () => {
    // A source that counts the bytes the fetch has taken from it.
    class Counting extends ProbeSource {
      pulled = 0;
      override async readUncompressed(l: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
        const body = await super.readUncompressed(l, start, end, signal);
        const count = (n: number): void => void (this.pulled += n);
        return (async function* () {
          for await (const piece of body) {
            count(piece.length);
            yield piece;
          }
        })();
      }
    }
    const source = new Counting([layer]);
    const s = await make(source);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const original = LayerFile.prototype.writeChunk;
    const writes = vi.spyOn(LayerFile.prototype, 'writeChunk').mockImplementation(async function (this: LayerFile, i: number, data: Buffer) {
      await gate;
      return original.call(this, i, data);
    });
    try {
      let settled = false;
      const read = s.read(layer.record, 0, 6 * CHUNK).finally(() => (settled = true));
      // Chunks go on being taken from the source while none is written yet (the fetch waited for
      // each write before), up to WRITES_IN_FLIGHT waiting for their write and one more: no further.
      await expect.poll(() => writes.mock.calls.length).toBe(WRITES_IN_FLIGHT + 1);
      await sleep(50);
      expect(writes).toHaveBeenCalledTimes(WRITES_IN_FLIGHT + 1);
      expect(settled).toBe(false); // a read returns chunks the disk cache holds, not before
      open();
      expect((await read).equals(bytes.subarray(0, 6 * CHUNK))).toBe(true);
    } finally {
      open();
      writes.mockRestore();
    }
    expect((await s.read(layer.record, CHUNK, 4 * CHUNK)).equals(bytes.subarray(CHUNK, 5 * CHUNK))).toBe(true);
    expect(source.calls).toEqual([[0, 6 * CHUNK]]); // the second read came from disk
  });

  it('keeps chunks byte-exact whether the source gives pieces it writes again or pieces it never touches (kept as views)', async () => {
    for (const stablePieces of [false, true]) {
      const source = new PieceSource(bytes, stablePieces);
      const s = await make(source);
      expect((await s.read(layer.record, 0, bytes.length)).equals(bytes), `stablePieces ${stablePieces}`).toBe(true);
      // What reached the disk: another store on the same directory verifies every chunk there.
      const again = new Storage({ disk: await DiskCache.open({ dir: s.disk.dir }), source: new ProbeSource([layer]), readTimeoutMs: 10_000, readaheadChunks: 0 });
      expect((await again.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
      const snap = await again.metrics.snapshot();
      expect([snap['verifyFailures.disk'] ?? 0, snap['requests.source'] ?? 0], `stablePieces ${stablePieces}`).toEqual([0, 0]);
      await again.disk.close();
    }
  });

  it('warm() makes a range ready without returning it: missing chunks fetched once, chunks on disk not fetched again', async () => {
    const source = new ProbeSource([layer]);
    const s = await make(source);
    expect(await s.warm(layer.record, CHUNK + 10, 3 * CHUNK)).toBe(3 * CHUNK);
    expect(source.calls).toEqual([[CHUNK, 5 * CHUNK]]);
    const diskBytes = async (): Promise<number> => (await s.metrics.snapshot())['bytes.disk'] ?? 0;
    expect(await diskBytes()).toBe(0);
    expect(await s.warm(layer.record, 2 * CHUNK, CHUNK)).toBe(CHUNK); // all on disk: nothing asked
    expect(source.calls).toHaveLength(1);
    expect(await diskBytes()).toBe(CHUNK); // counted as the disk tier's, as a read's would be
    const size = bytes.length;
    expect(await s.warm(layer.record, size - 100, 1000)).toBe(100); // cut at the layer's end
    const before = source.calls.length;
    expect(await s.warm(layer.record, 0, 5 * CHUNK)).toBe(5 * CHUNK); // only chunk 0 is missing
    expect(source.calls.slice(before)).toEqual([[0, CHUNK]]);
    expect(await diskBytes()).toBe(CHUNK + 4 * CHUNK); // what was on disk of each range (the last chunk was fetched), not what was fetched
    expect((await s.read(layer.record, 0, 5 * CHUNK)).equals(bytes.subarray(0, 5 * CHUNK))).toBe(true);
    expect(source.calls.length).toBe(before + 1); // the read came from disk
  });
});

/**
 * The layer in pieces cut across chunk boundaries: each a fresh buffer when `stablePieces`, else
 * one buffer written over with the next piece (and scribbled on in between), as a decoder may.
 */
class PieceSource implements LayerSource {
  constructor(
    private readonly bytes: Buffer,
    private readonly stable: boolean,
  ) {}

  stablePieces(): boolean {
    return this.stable;
  }

  async readUncompressed(_layer: LayerRecord, start: number, end: number): Promise<AsyncIterable<Uint8Array>> {
    const { bytes, stable: stablePieces } = this;
    const reused = Buffer.alloc(100_003);
    return (async function* () {
      for (let at = start; at < end; at += reused.length) {
        const n = Math.min(reused.length, end - at);
        if (stablePieces) {
          yield Buffer.from(bytes.subarray(at, at + n));
          continue;
        }
        bytes.copy(reused, 0, at, at + n);
        yield reused.subarray(0, n);
        reused.fill(0xaa);
        await sleep(1);
      }
    })();
  }
}

describe('read-ahead from the environment', () => {
  it('refuses a bad CLIP_READAHEAD_CHUNKS or CLIP_COLD_READAHEAD_CHUNKS with EINVAL naming it, when it opens', async () => {
    const dir = await tempDir();
    const metrics = new StorageMetrics();
    const disk = await DiskCache.open({ dir, metrics });
    try {
      const open = (): Storage => new Storage({ disk, source: new ProbeSource([]), metrics, statsIntervalMs: 0 });
      for (const env of ['CLIP_READAHEAD_CHUNKS', 'CLIP_COLD_READAHEAD_CHUNKS']) {
        const err = withEnv(env, '65', () => thrown(open));
        expect((err as Error).message).toBe(`${env}=65: not a whole number of chunks from 0 to 64`);
      }
      expect(withEnv('CLIP_READAHEAD_CHUNKS', '64', open)).toBeInstanceOf(Storage);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
