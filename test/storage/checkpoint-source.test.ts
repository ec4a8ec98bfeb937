import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayoutSource } from '../../src/oci/layout.js';
import type { BlobReadOptions, BlobStore, Descriptor } from '../../src/oci/types.js';
import { learnedOf } from '../../src/archive/learned-checkpoint.js';
import { CheckpointSource, processKeep, layerFromScan, type CompressedRange, type ResumableLayer } from '../../src/storage/checkpoint-source.js';
import type { LayerRecord, LayerSource } from '../../src/storage/types.js';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { ClipError } from '../../src/util/errors.js';
import { fetchStart } from '../../src/archive/random-access.js';
import { makeGzipLayout, tempDir } from './helpers.js';

const CHUNK = 64 * 1024;

/** Counts the compressed bytes and ranges asked of a real store. */
class CountingStore implements BlobStore {
  readonly ranges: [number, number][] = [];
  bytes = 0;
  /** When set, range requests wait for it (to let other readers arrive meanwhile). */
  gate: Promise<void> | undefined;
  constructor(private readonly inner: BlobStore) {}
  get location(): string {
    return this.inner.location;
  }
  openBlob(desc: Pick<Descriptor, 'digest' | 'size'>, opts?: BlobReadOptions) {
    return this.inner.openBlob(desc, opts);
  }
  async openBlobRange(desc: Pick<Descriptor, 'digest' | 'size'>, start: number, end: number, opts: BlobReadOptions = {}) {
    this.ranges.push([start, end]);
    await this.gate;
    return this.inner.openBlobRange(desc, start, end, { ...opts, onBytes: (n) => (this.bytes += n) });
  }
}

/** A real store whose first `failures` range responses break off after 1000 bytes. */
class BreakingStore extends CountingStore {
  constructor(
    inner: BlobStore,
    public failures: number,
  ) {
    super(inner);
  }
  override async openBlobRange(desc: Pick<Descriptor, 'digest' | 'size'>, start: number, end: number, opts: BlobReadOptions = {}) {
    const body = await super.openBlobRange(desc, start, end, opts);
    if (this.failures <= 0) return body;
    this.failures--;
    return Readable.from(
      (async function* () {
        let sent = 0;
        for await (const piece of body as AsyncIterable<Buffer>) {
          if (sent + piece.length >= 1000) {
            yield piece.subarray(0, 1000 - sent);
            body.destroy();
            throw new ClipError('ENETWORK', 'connection reset (injected)');
          }
          sent += piece.length;
          yield piece;
        }
      })(),
    );
  }
}

/** A real checkpoint source that flips one uncompressed byte at `at` in its first response. */
class FlippingSource implements LayerSource {
  private flipped = false;
  constructor(
    private readonly inner: CheckpointSource,
    private readonly at: number,
  ) {}
  span(layer: LayerRecord, start: number, end: number) {
    return this.inner.span(layer, start, end);
  }
  invalidate(layer: LayerRecord, start: number, end: number) {
    this.inner.invalidate(layer, start, end);
  }
  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal) {
    const body = await this.inner.readUncompressed(layer, start, end, signal);
    const flip = !this.flipped && start <= this.at && this.at < end;
    if (flip) this.flipped = true;
    const at = this.at;
    return (async function* () {
      let pos = start;
      for await (const piece of body) {
        const b = Buffer.from(piece);
        if (flip && pos <= at && at < pos + b.length) b[at - pos]! ^= 0x20;
        pos += b.length;
        yield b;
      }
    })();
  }
}

describe('reading gzip layers by range from the nearest checkpoint', () => {
  let root: string;
  let tar: Buffer;
  let layer: ResumableLayer;
  let store: CountingStore;
  let layoutDir: string;

  beforeAll(async () => {
    root = await tempDir();
    const made = await makeGzipLayout(root, { files: 16, bytesEach: 200_000, chunkSize: CHUNK, span: 256 * 1024 });
    tar = made.tar;
    // Without block boundaries: these tests are about checkpoint spans (bounds: their own describe).
    layer = layerFromScan({ ...made.scan, bounds: undefined });
    layoutDir = made.layoutDir;
    store = new CountingStore(new LayoutSource(layoutDir));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh store over an empty cache directory, given to `body` and closed afterwards. */
  async function withStorage(source: LayerSource, body: (s: Storage) => Promise<void>, readaheadChunks = 0): Promise<void> {
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      await body(new Storage({ disk, source, readaheadChunks }));
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A chunk k whose fetch (from its checkpoint to the next) also inflates all of chunks k + 1 and k + 2. */
  function chunkWithTwoAfter(): number {
    for (let k = 1; (k + 3) * CHUNK <= tar.length; k++) {
      if (layer.compressedRange(k * CHUNK, (k + 1) * CHUNK).endOut! >= (k + 3) * CHUNK) return k;
    }
    throw new Error('no checkpoint span holds three chunks: make the span bigger');
  }

  const missingOf = async (s: Storage, first: number, last: number): Promise<number[]> => {
    const lease = await s.disk.acquire(layer);
    try {
      return await lease.file.missing(first, last);
    } finally {
      lease.release();
    }
  };

  it('keeps every whole chunk a fetch inflates: chunk k then k + 1 costs one source request', async () => {
    const k = chunkWithTwoAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    await withStorage(new CheckpointSource(counting), async (s) => {
      expect((await s.read(layer, k * CHUNK + 5, 100)).equals(tar.subarray(k * CHUNK + 5, k * CHUNK + 105))).toBe(true);
      const r = layer.compressedRange(k * CHUNK, (k + 1) * CHUNK);
      expect(counting.ranges).toEqual([[r.start, r.end]]);
      // The read is served once its chunk is in; the rest of the span follows in the background.
      await expect.poll(() => counting.bytes).toBe(r.end - r.start);
      // Whole chunks from the checkpoint to the span's end are on disk; the partial edges are not.
      const wholeFirst = Math.ceil(r.checkpoint.out / CHUNK);
      const wholeLast = r.endOut === tar.length ? Math.ceil(tar.length / CHUNK) - 1 : Math.floor(r.endOut! / CHUNK) - 1;
      await expect.poll(() => missingOf(s, wholeFirst, wholeLast)).toEqual([]);
      if (wholeFirst > 0 && r.checkpoint.out % CHUNK) expect(await missingOf(s, wholeFirst - 1, wholeFirst - 1)).toEqual([wholeFirst - 1]);
      if (r.endOut! % CHUNK) expect(await missingOf(s, wholeLast + 1, wholeLast + 1)).toEqual([wholeLast + 1]);
      expect((await s.read(layer, (k + 1) * CHUNK, CHUNK)).equals(tar.subarray((k + 1) * CHUNK, (k + 2) * CHUNK))).toBe(true);
      expect(counting.ranges.length).toBe(1);
      const m = await s.metrics.snapshot();
      expect(m['verifyFailures.source']).toBe(0);
      expect(m['requests.source']).toBe(1);
    });
  });

  it('delivers a chunk being brought along to a reader who asks for it meanwhile (singleflight)', async () => {
    const k = chunkWithTwoAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    let open!: () => void;
    counting.gate = new Promise((r) => (open = r));
    await withStorage(new CheckpointSource(counting), async (s) => {
      const first = s.read(layer, k * CHUNK, CHUNK);
      await expect.poll(() => counting.ranges.length).toBe(1);
      const second = s.read(layer, (k + 2) * CHUNK + 9, 1000);
      open();
      expect((await first).equals(tar.subarray(k * CHUNK, (k + 1) * CHUNK))).toBe(true);
      expect((await second).equals(tar.subarray((k + 2) * CHUNK + 9, (k + 2) * CHUNK + 1009))).toBe(true);
      expect(counting.ranges.length).toBe(1);
      expect((await s.metrics.snapshot())['singleflightJoins']).toBeGreaterThanOrEqual(1);
    });
  });

  it('verifies the chunks brought along: a flipped byte is a verification failure, never kept, and a waiting reader fetches right bytes', async () => {
    const k = chunkWithTwoAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    let open!: () => void;
    counting.gate = new Promise((r) => (open = r));
    const flipAt = (k + 1) * CHUNK + 777;
    await withStorage(new FlippingSource(new CheckpointSource(counting), flipAt), async (s) => {
      const first = s.read(layer, k * CHUNK, 10);
      await expect.poll(() => counting.ranges.length).toBe(1);
      const joiner = s.read(layer, flipAt - 7, 20);
      open();
      expect((await first).equals(tar.subarray(k * CHUNK, k * CHUNK + 10))).toBe(true);
      expect((await joiner).equals(tar.subarray(flipAt - 7, flipAt + 13))).toBe(true);
      const m = await s.metrics.snapshot();
      expect(m['verifyFailures.source']).toBe(1);
      expect(counting.ranges.length).toBe(2); // the joiner's own fetch, after the bad one
      expect(await missingOf(s, k, k + 2)).toEqual([]);
    });
    // Without a joiner: the bad chunk stays missing, its neighbours are kept.
    const again = new CountingStore(new LayoutSource(layoutDir));
    await withStorage(new FlippingSource(new CheckpointSource(again), flipAt), async (s) => {
      await s.read(layer, k * CHUNK, 10);
      await expect.poll(async () => (await s.metrics.snapshot())['verifyFailures.source']).toBe(1);
      await expect.poll(() => missingOf(s, k, k + 2)).toEqual([k + 1]);
    });
  });

  it('reads ahead of sequential readers only: random reads fetch just their checkpoint spans', async () => {
    const chunks = Math.ceil(tar.length / CHUNK);
    const counting = new CountingStore(new LayoutSource(layoutDir));
    await withStorage(
      new CheckpointSource(counting, { merge: false }),
      async (s) => {
        // Each read starts in a chunk next to the last one read, but not where it ended.
        const order = [chunks - 3, chunks - 2, 3, 4, Math.floor(chunks / 2)];
        const expected: [number, number][] = [];
        for (const c of order) {
          const off = c * CHUNK + 1234;
          const before = counting.ranges.length;
          expect((await s.read(layer, off, 50)).equals(tar.subarray(off, off + 50))).toBe(true);
          if (counting.ranges.length > before) {
            const r = layer.compressedRange(c * CHUNK, (c + 1) * CHUNK);
            expected.push([r.start, r.end]);
          }
        }
        expect(counting.ranges).toEqual(expected);
        // A sequential reader does get read-ahead beyond its span: reading the layer's first
        // span in small pieces fetches more than that span.
        const seq = new CountingStore(new LayoutSource(layoutDir));
        await withStorage(
          new CheckpointSource(seq, { merge: false }),
          async (t) => {
            const r0 = layer.compressedRange(0, CHUNK);
            for (let off = 0; off < r0.endOut!; off += 16 * 1024) await t.read(layer, off, 16 * 1024);
            await expect.poll(() => Math.max(...seq.ranges.map((r) => r[1]))).toBeGreaterThan(r0.end);
          },
          4,
        );
      },
      4,
    );
  });

  it('serves verified bytes through the read path, fetching a small part of the blob for a small read', async () => {
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      const s = new Storage({ disk, source: new CheckpointSource(store) });
      const off = Math.floor(tar.length * 0.7);
      expect((await s.read(layer, off, 3000)).equals(tar.subarray(off, off + 3000))).toBe(true);
      expect(store.ranges.length).toBe(1);
      expect(store.bytes).toBeLessThan(layer.compressedSize / 3);
      // The rest of the layer, in a few big reads: byte-exact, every chunk verified.
      expect((await s.read(layer, 0, tar.length)).equals(tar)).toBe(true);
      expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(0);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('produces exactly the requested uncompressed range from any checkpoint', async () => {
    const source = new CheckpointSource(store);
    for (const [start, end] of [
      [0, 10],
      [CHUNK * 7, CHUNK * 9],
      [tar.length - CHUNK - 3, tar.length],
    ] as const) {
      const parts: Buffer[] = [];
      for await (const p of await source.readUncompressed(layer, start, end, AbortSignal.timeout(10_000))) parts.push(Buffer.from(p));
      expect(Buffer.concat(parts).equals(tar.subarray(start, end)), `${start}-${end}`).toBe(true);
    }
  });

  /**
   * A chunk c inside the span [P, Q) of its checkpoint P, whose next chunk c + 1 straddles Q: a
   * read of c + 1 starts from P too (the overlap that merging removes).
   */
  function straddling(): { c: number; p: CompressedRange; q: CompressedRange } {
    for (let c = 1; (c + 3) * CHUNK <= tar.length; c++) {
      const p = layer.compressedRange(c * CHUNK, (c + 1) * CHUNK);
      const q = p.endOut!;
      if (p.checkpoint.out <= c * CHUNK && q > (c + 1) * CHUNK && q < (c + 2) * CHUNK) return { c, p, q: layer.compressedRange(q, q + 1) };
    }
    throw new Error('no chunk straddles a checkpoint after a chunk inside its span');
  }

  const overlap = (ranges: [number, number][]): number => {
    let n = 0;
    for (let i = 0; i < ranges.length; i++) for (let j = i + 1; j < ranges.length; j++) n += Math.max(0, Math.min(ranges[i]![1], ranges[j]![1]) - Math.max(ranges[i]![0], ranges[j]![0]));
    return n;
  };

  it('a read that needs a span being inflated joins that flight: no compressed byte asked twice (and twice without merging)', async () => {
    const { c, p, q } = straddling();
    for (const merge of [true, false]) {
      const counting = new CountingStore(new LayoutSource(layoutDir));
      let open!: () => void;
      counting.gate = new Promise((r) => (open = r));
      const source = new CheckpointSource(counting, { merge });
      await withStorage(source, async (s) => {
        const a = s.read(layer, c * CHUNK + 3, 100);
        await expect.poll(() => counting.ranges.length).toBe(1);
        const b = s.read(layer, (c + 1) * CHUNK + 5, 100);
        await expect.poll(() => counting.ranges.length).toBe(2);
        open();
        expect((await a).equals(tar.subarray(c * CHUNK + 3, c * CHUNK + 103))).toBe(true);
        expect((await b).equals(tar.subarray((c + 1) * CHUNK + 5, (c + 1) * CHUNK + 105))).toBe(true);
        expect(counting.ranges[0]).toEqual([p.start, p.end]);
        if (merge) {
          // The second request starts where the first one's inflation ends (at Q), not at P.
          expect(counting.ranges[1]![0]).toBe(fetchStart(q.checkpoint));
          expect(overlap(counting.ranges)).toBeLessThanOrEqual(1); // the byte an unaligned checkpoint shares
          expect(source.stats.joined).toBe(1);
        } else {
          expect(counting.ranges[1]![0]).toBe(p.start);
          expect(overlap(counting.ranges)).toBe(p.end - p.start);
        }
        expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(0);
      });
    }
  });

  it('a read that starts inside what an earlier fetch inflated continues from its end checkpoint', async () => {
    const { c, p, q } = straddling();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const source = new CheckpointSource(counting);
    await withStorage(source, async (s) => {
      await s.read(layer, c * CHUNK, 10);
      await expect.poll(() => counting.bytes).toBe(p.end - p.start);
      const off = (c + 1) * CHUNK + 17;
      expect((await s.read(layer, off, CHUNK)).equals(tar.subarray(off, off + CHUNK))).toBe(true);
      expect(counting.ranges.length).toBe(2);
      expect(counting.ranges[1]![0]).toBe(fetchStart(q.checkpoint));
      expect(source.stats.kept).toBeGreaterThanOrEqual(1);
      expect((await s.metrics.snapshot())['verifyFailures.source']).toBe(0);
    });
  });

  it('a failed shared flight fails every read on it; their retries share one new flight', async () => {
    const { p } = straddling();
    const breaking = new BreakingStore(new LayoutSource(layoutDir), 1);
    let open!: () => void;
    breaking.gate = new Promise((r) => (open = r));
    // Not learning: the learning inflater hands out each block's bytes at once, so these reads
    // would have theirs before the break.
    const source = new CheckpointSource(breaking, { learn: false });
    const at = p.checkpoint.out;
    const readAll = async (start: number, end: number): Promise<Buffer> => {
      const parts: Buffer[] = [];
      for await (const piece of await source.readUncompressed(layer, start, end, AbortSignal.timeout(10_000))) parts.push(Buffer.from(piece));
      return Buffer.concat(parts);
    };
    const first = [readAll(at + 10, at + 100), readAll(at + 2000, at + 5000)].map((r) => r.then(() => 'ok', (e: unknown) => (e as ClipError).code));
    expect(breaking.ranges.length).toBe(1);
    open();
    expect(await Promise.all(first)).toEqual(['ENETWORK', 'ENETWORK']);
    const [x, y] = await Promise.all([readAll(at + 10, at + 100), readAll(at + 2000, at + 5000)]);
    expect(x.equals(tar.subarray(at + 10, at + 100))).toBe(true);
    expect(y.equals(tar.subarray(at + 2000, at + 5000))).toBe(true);
    expect(breaking.ranges).toEqual([
      [p.start, p.end],
      [p.start, p.end],
    ]);
  });

  it('through the read path, two readers on a failed shared flight both retry and get verified bytes', async () => {
    const { c, p } = straddling();
    const breaking = new BreakingStore(new LayoutSource(layoutDir), 1);
    let open!: () => void;
    breaking.gate = new Promise((r) => (open = r));
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      const source = new CheckpointSource(breaking);
      const s = new Storage({ disk, source, readaheadChunks: 0, retryBackoffMs: 5 });
      const a = s.read(layer, c * CHUNK + 3, 100);
      await expect.poll(() => breaking.ranges.length).toBe(1);
      const b = s.read(layer, (c + 1) * CHUNK + 5, 100);
      await expect.poll(() => breaking.ranges.length).toBe(2);
      // And the second read has planned (joined the first one's flight or launched its own): under
      // load it could plan only after the gate opened and the flight failed, and never see the failure.
      await expect.poll(() => source.stats.flights + source.stats.joined).toBeGreaterThanOrEqual(2);
      open();
      expect((await a).equals(tar.subarray(c * CHUNK + 3, c * CHUNK + 103))).toBe(true);
      expect((await b).equals(tar.subarray((c + 1) * CHUNK + 5, (c + 1) * CHUNK + 105))).toBe(true);
      // The broken request from P, the second reader's own from Q, and one retry for both: not one
      // each. (Where the retry starts depends on which reader retries first, which the machine's load
      // decides: P, or a checkpoint the other reader's Q request already covers.)
      expect(breaking.ranges.filter((r) => r[0] === p.start).length).toBeGreaterThanOrEqual(1);
      expect(breaking.ranges.length).toBeLessThanOrEqual(3);
      const m = await s.metrics.snapshot();
      expect(m['errors.source']).toBeGreaterThanOrEqual(2);
      expect(m['verifyFailures.source']).toBe(0);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a read given up stops a flight no other read waits on; one another read waits on goes on', async () => {
    const { p } = straddling();
    const at = p.checkpoint.out;
    const counting = new CountingStore(new LayoutSource(layoutDir));
    let open!: () => void;
    counting.gate = new Promise((r) => (open = r));
    const source = new CheckpointSource(counting);
    const drain = async (body: AsyncIterable<Uint8Array>): Promise<Buffer> => {
      const parts: Buffer[] = [];
      for await (const piece of body) parts.push(Buffer.from(piece));
      return Buffer.concat(parts);
    };
    // Two reads on one flight: the first gives up, the second still gets its bytes from it.
    const quitter = new AbortController();
    const a = drain(await source.readUncompressed(layer, at + 10, at + 100, quitter.signal)).catch((e: unknown) => e);
    const b = drain(await source.readUncompressed(layer, at + 200, at + 300, AbortSignal.timeout(10_000)));
    quitter.abort(new Error('given up'));
    open();
    expect(((await a) as Error).message).toBe('given up');
    expect((await b).equals(tar.subarray(at + 200, at + 300))).toBe(true);
    expect(counting.ranges.length).toBe(1);
    // A read alone that gives up aborts its flight: the span is not kept, the next read fetches it.
    const alone = new CountingStore(new LayoutSource(layoutDir));
    let openAlone!: () => void;
    alone.gate = new Promise((r) => (openAlone = r));
    const single = new CheckpointSource(alone);
    const stop = new AbortController();
    const c = drain(await single.readUncompressed(layer, at + 10, at + 100, stop.signal)).catch((e: unknown) => e);
    stop.abort(new Error('given up'));
    openAlone();
    expect(((await c) as Error).message).toBe('given up');
    expect((await drain(await single.readUncompressed(layer, at + 10, at + 100, AbortSignal.timeout(10_000)))).equals(tar.subarray(at + 10, at + 100))).toBe(true);
    expect(alone.ranges.length).toBe(2);
  });

  it('drops kept spans no read used for keepMs', async () => {
    const { c, p } = straddling();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const source = new CheckpointSource(counting, { keepMs: 50 });
    await withStorage(source, async (s) => {
      await s.read(layer, c * CHUNK, 10);
      await expect.poll(() => counting.bytes).toBe(p.end - p.start);
      await expect.poll(() => source.stats.evicted, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
      await s.read(layer, (c + 1) * CHUNK + 17, 10);
      expect(counting.ranges[1]![0]).toBe(p.start);
    });
  });

  it('keeps no more inflated spans than asked, and refetches an evicted one', async () => {
    const { c, p } = straddling();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const source = new CheckpointSource(counting, { keepBytes: 0 });
    await withStorage(source, async (s) => {
      await s.read(layer, c * CHUNK, 10);
      await expect.poll(() => counting.bytes).toBe(p.end - p.start);
      await s.read(layer, (c + 1) * CHUNK + 17, 10);
      expect(counting.ranges.length).toBe(2);
      expect(counting.ranges[1]![0]).toBe(p.start);
      expect(source.stats.kept).toBe(0);
    });
  });

  it('keeps no more inflated spans in the process than its budget, over every source: another source\'s read evicts them', async () => {
    const { c, p } = straddling();
    const saved = processKeep.bytes;
    processKeep.bytes = 1; // any kept span is over it: only the newest may stay
    try {
      const first = new CountingStore(new LayoutSource(layoutDir));
      const a = new CheckpointSource(first); // its own keepBytes (48 MiB) is far from reached
      const b = new CheckpointSource(new LayoutSource(layoutDir));
      await withStorage(a, async (sa) => {
        await sa.read(layer, c * CHUNK, 10);
        await expect.poll(() => first.bytes).toBe(p.end - p.start);
        // Kept by a, it serves a's next read in that span without a fetch.
        await sa.read(layer, c * CHUNK + 100, 10);
        expect(first.ranges.length).toBe(1);
        await withStorage(b, async (sb) => {
          await sb.read(layer, c * CHUNK, 10);
          // b's kept span put the process over its budget: a's span, the oldest, went.
          await expect.poll(() => a.stats.evicted).toBe(1);
        });
        await sa.read(layer, (c + 1) * CHUNK + 17, 10);
        expect(first.ranges.length).toBe(2); // a fetched again: its span was not kept
      });
    } finally {
      processKeep.bytes = saved;
    }
  });
});

describe('fetches that end at a deflate block boundary (index format 3)', () => {
  let root: string;
  let tar: Buffer;
  let layer: ResumableLayer;
  let layoutDir: string;

  beforeAll(async () => {
    root = await tempDir();
    const made = await makeGzipLayout(root, { files: 16, bytesEach: 200_000, chunkSize: CHUNK, span: 1024 * 1024 });
    tar = made.tar;
    layer = layerFromScan(made.scan);
    layoutDir = made.layoutDir;
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const read = async (src: CheckpointSource, start: number, end: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const p of await src.readUncompressed(layer, start, end, new AbortController().signal)) parts.push(Buffer.from(p));
    return Buffer.concat(parts);
  };

  /** A chunk k past the first 32 KiB of its checkpoint span, with four more chunks in the span after it. */
  function chunkWithFourAfter(): number {
    for (let k = 1; (k + 6) * CHUNK <= tar.length; k++) {
      const r = layer.compressedRange(k * CHUNK, (k + 1) * CHUNK);
      if (k * CHUNK >= r.checkpoint.out + 32 * 1024 && r.endOut! >= (k + 5) * CHUNK) return k;
    }
    throw new Error('no checkpoint span holds five chunks: make the span bigger');
  }

  /** No compressed byte asked twice: ranges overlap by at most the byte two blocks share. */
  function expectDisjoint(ranges: [number, number][]): void {
    const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]![0]).toBeGreaterThanOrEqual(sorted[i - 1]![1] - 1);
  }

  it('a read fetches from its checkpoint to the first boundary past its end, not to the next checkpoint', async () => {
    const k = chunkWithFourAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const src = new CheckpointSource(counting);
    expect((await read(src, k * CHUNK, (k + 1) * CHUNK)).equals(tar.subarray(k * CHUNK, (k + 1) * CHUNK))).toBe(true);
    const r = layer.compressedRange(k * CHUNK, (k + 1) * CHUNK);
    const b = layer.boundAtOrAfter!((k + 1) * CHUNK)!;
    expect(b.in).toBeLessThan(r.end);
    expect(counting.ranges).toEqual([[r.start, b.in]]);
    // Without merging too.
    const single = new CountingStore(new LayoutSource(layoutDir));
    const plain = new CheckpointSource(single, { merge: false });
    expect((await read(plain, k * CHUNK + 3, (k + 1) * CHUNK)).equals(tar.subarray(k * CHUNK + 3, (k + 1) * CHUNK))).toBe(true);
    expect(single.ranges).toEqual([[r.start, b.in]]);
  });

  it('reads one after another through a span continue from where the last one stopped: no byte fetched twice', async () => {
    const k = chunkWithFourAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const src = new CheckpointSource(counting);
    for (let j = k; j < k + 5; j++) {
      expect((await read(src, j * CHUNK, (j + 1) * CHUNK)).equals(tar.subarray(j * CHUNK, (j + 1) * CHUNK)), `chunk ${j}`).toBe(true);
    }
    expect(counting.ranges.length).toBe(5);
    expect(counting.ranges[0]![0]).toBe(layer.compressedRange(k * CHUNK, (k + 1) * CHUNK).start);
    expectDisjoint(counting.ranges);
    // A read inside what was fetched is served from the kept segments.
    expect((await read(src, k * CHUNK + 100, (k + 3) * CHUNK - 5)).equals(tar.subarray(k * CHUNK + 100, (k + 3) * CHUNK - 5))).toBe(true);
    expect(counting.ranges.length).toBe(5);
  });

  it('a read past a segment still in flight continues it once it ends, instead of fetching the span again', async () => {
    const k = chunkWithFourAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    let open!: () => void;
    counting.gate = new Promise((r) => (open = r));
    const src = new CheckpointSource(counting);
    const first = read(src, k * CHUNK, (k + 1) * CHUNK);
    await expect.poll(() => counting.ranges.length).toBe(1);
    const second = read(src, (k + 2) * CHUNK + 9, (k + 3) * CHUNK);
    open();
    expect((await first).equals(tar.subarray(k * CHUNK, (k + 1) * CHUNK))).toBe(true);
    expect((await second).equals(tar.subarray((k + 2) * CHUNK + 9, (k + 3) * CHUNK))).toBe(true);
    expect(counting.ranges.length).toBe(2);
    expectDisjoint(counting.ranges);
  });

  it('a checkpoint learned inside a kept segment: a read across both gets each byte once', async () => {
    const k = chunkWithFourAfter();
    const src = new CheckpointSource(new CountingStore(new LayoutSource(layoutDir)));
    expect((await read(src, k * CHUNK, (k + 1) * CHUNK)).equals(tar.subarray(k * CHUNK, (k + 1) * CHUNK))).toBe(true);
    // A checkpoint (a block boundary with its window) inside the kept segment, as a profile brings.
    const b = layer.boundAtOrAfter!(k * CHUNK + CHUNK / 2)!;
    expect(b.out).toBeLessThan((k + 1) * CHUNK);
    const added = src.addLearnedCheckpoints(layer, [learnedOf(b, tar.subarray(b.out - 32 * 1024, b.out))]);
    expect(added).toBe(1);
    const [start, end] = [b.out - 100, (k + 2) * CHUNK + 7];
    const got = await read(src, start, end);
    expect(got.length).toBe(end - start);
    expect(got.equals(tar.subarray(start, end))).toBe(true);
  });

  it('a read continuing a segment in flight keeps that flight going when the read that started it is given up', async () => {
    const k = chunkWithFourAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    let open!: () => void;
    counting.gate = new Promise((r) => (open = r));
    const src = new CheckpointSource(counting);
    const givenUp = new AbortController();
    const first = (async () => {
      for await (const _ of await src.readUncompressed(layer, k * CHUNK, (k + 1) * CHUNK, givenUp.signal)) void _;
    })();
    await expect.poll(() => counting.ranges.length).toBe(1);
    const second = read(src, (k + 2) * CHUNK + 9, (k + 3) * CHUNK);
    givenUp.abort();
    open();
    await expect(first).rejects.toThrow();
    expect((await second).equals(tar.subarray((k + 2) * CHUNK + 9, (k + 3) * CHUNK))).toBe(true);
  });

  it('through the read path: verified bytes, each chunk once, fewer compressed bytes than whole spans', async () => {
    const k = chunkWithFourAfter();
    const counting = new CountingStore(new LayoutSource(layoutDir));
    const dir = await tempDir();
    const disk = await DiskCache.open({ dir });
    try {
      const s = new Storage({ disk, source: new CheckpointSource(counting), readaheadChunks: 0 });
      for (let j = k; j < k + 3; j++) {
        expect((await s.read(layer, j * CHUNK + 1, CHUNK - 2)).equals(tar.subarray(j * CHUNK + 1, (j + 1) * CHUNK - 1))).toBe(true);
      }
      const m = await s.metrics.snapshot();
      expect(m['verifyFailures.source']).toBe(0);
      expectDisjoint(counting.ranges);
      const r = layer.compressedRange(k * CHUNK, (k + 1) * CHUNK);
      await expect.poll(() => counting.bytes).toBeLessThan(r.end - r.start);
    } finally {
      await disk.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('what kept spans hold', () => {
  let root: string;

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('keeps a small span as a copy, not as a view that holds the inflater\'s whole output buffer alive', async () => {
    root = await tempDir();
    // 32 KiB checkpoint spans: each a small part of the native inflater's 512 KiB output buffers.
    const made = await makeGzipLayout(root, { files: 4, bytesEach: 200_000, chunkSize: CHUNK, span: 32 * 1024 });
    const layer = layerFromScan({ ...made.scan, bounds: undefined });
    const src = new CheckpointSource(new LayoutSource(made.layoutDir));
    const [start, end] = [2 * CHUNK, 3 * CHUNK];
    const from = layer.compressedRange(start, start + 1).checkpoint.out;
    const to = layer.compressedRange(end - 1, end).endOut!;
    const parts: Buffer[] = [];
    for await (const p of await src.readUncompressed(layer, start, end, AbortSignal.timeout(10_000))) parts.push(Buffer.from(p));
    expect(Buffer.concat(parts).equals(made.tar.subarray(start, end))).toBe(true);
    // Kept: the spans the flight inflated, counted at their own size (views would count 512 KiB each).
    await expect.poll(() => src.keptBytes).toBe(to - from);
  });
});
