/**
 * The one read path: read(layer, offset, length) from the fastest tier holding verified bytes —
 * disk, then the remote cache, then the source — filling the faster tiers on the way back.
 *
 * Work is per chunk. Missing chunks already being fetched (by any reader in this process) are
 * waited on, never fetched twice. The rest are asked of the remote cache one by one, and what it
 * lacks is fetched from the source in one request per run of adjacent chunks, widened to the
 * whole chunks the source inflates anyway (a checkpoint's span), which are kept too. Every chunk
 * is checked against its sha256 before it is written to disk, published or returned. Read-ahead
 * is for sequential readers only: a read that starts where a recent read of the layer ended; it
 * is taken from the remote cache (warm), and from the source (cold) only for coldReadaheadChunks.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import { untilAborted } from '../util/abort.js';
import { ClipError, isClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { wholeNumberSetting } from '../util/setting.js';
import { deadlineSignal, deferred, sleep, type Deferred } from './deferred.js';
import type { DiskCache, InflightChunk, LayerLease } from './disk-cache.js';
import { cacheFileName } from './layer-file.js';
import { StorageMetrics, type Tier } from './metrics.js';
import type { RedisChunkCache } from './remote-cache.js';
import { learnedForReads, ReadChunks } from './learned-reads.js';
import { recordStats, type Counters } from './stats-log.js';
import { chunkCount, chunkLength, type LayerRecord, type LayerSource } from './types.js';

export interface StorageOptions {
  disk: DiskCache;
  remote?: RedisChunkCache;
  source: LayerSource;
  /** A read that the tiers cannot satisfy within this fails (ETIMEOUT/ENETWORK/EDIGEST). */
  readTimeoutMs?: number;
  /** First pause between source retries; doubles up to 2 s. */
  retryBackoffMs?: number;
  /** Remote chunk GETs in flight per fetch. */
  remoteConcurrency?: number;
  /** Chunks fetched ahead of a sequential reader, in the same request as its misses (0: none). */
  readaheadChunks?: number;
  /**
   * Of those, how many may come from the source (cold data: a range request and inflation); the
   * rest are taken only from the remote cache (warm). Default 0: measured on a cold python start
   * (bench/index/RESULTS.md), reading ahead from the source cost 28 % more bytes and time; a
   * source fetch already brings along every whole chunk of its checkpoint span.
   */
  coldReadaheadChunks?: number;
  metrics?: StorageMetrics;
  logger?: Logger;
  /**
   * Add this store's counters to CACHE_DIR/stats/ (for `clip cache stats`) at close and every
   * this many ms (default 5 minutes; 0: only at close). Give each store its own metrics: two stores
   * recording one StorageMetrics would count it twice.
   */
  statsIntervalMs?: number;
}

export interface ReadOptions {
  /** The caller's signal, or a function that makes it: called only if the read waits on a fetch. */
  signal?: AbortSignal | (() => AbortSignal);
}

/**
 * Settles a chunk claimed only because a wider fetch inflated it anyway, when that fetch did not
 * deliver it verified: whoever joined it fetches it for themselves.
 */
const NOT_DELIVERED = new ClipError('ENETWORK', 'chunk not delivered by the fetch that was to bring it along');

/**
 * At most this many bytes past a request are brought along: a layer with few checkpoints (one
 * zstd frame) would otherwise have a one-chunk read inflate the rest of it.
 */
const BROUGHT_ALONG_MAX_BYTES = 32 * 1024 * 1024;
/** Verified chunks a fetch may have waiting for their disk write before it waits for the oldest (memory stays bounded). */
export const WRITES_IN_FLIGHT = 4;

/** Errors of a fetch abandoned because its store closed: a store that joined it fetches for itself. */
const closedErrors = new WeakSet<object>();

function closedError(err: ClipError): ClipError {
  closedErrors.add(err);
  return err;
}

function isClosedError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && closedErrors.has(err);
}

/** A chunk's key in the fetches in flight: by layer file name, which binds the chunk table. */
function chunkKey(layer: LayerRecord, i: number): string {
  return `${cacheFileName(layer)}/${i}`;
}

/** Recent read ends kept per layer, to recognise several sequential readers at once. */
const READERS_TRACKED = 8;

/** Errors from a source that no retry will fix. */
const PERMANENT = new Set(['ENOTFOUND', 'EAUTH', 'EUNSUPPORTED', 'ECORRUPT', 'EINVAL', 'EPERM', 'EUNSAFE']);

export class Storage {
  readonly metrics: StorageMetrics;
  readonly disk: DiskCache;
  readonly remote: RedisChunkCache | undefined;
  private readonly source: LayerSource;
  private diskReads = 0;
  /** Called when a chunk from the source fails its digest twice (serve.ts audits the layer then). */
  onSourceMismatch: ((layer: LayerRecord) => void) | undefined;
  private readonly readTimeoutMs: number;
  private readonly backoffMs: number;
  private readonly remoteConcurrency: number;
  private readonly readahead: number;
  private readonly coldReadahead: number;
  /** Where each layer's recent reads ended: a read starting at one of them continues a sequential reader. */
  private readonly readEnds = new Map<string, number[]>();
  private readonly log: Logger;
  /** Chunk fetches in flight, the disk cache's: shared with the other stores on it when it is shared. */
  private readonly inflight: Map<string, InflightChunk>;
  /** The last source failure per layer, given as the cause of a read that times out. */
  private readonly lastSourceError = new Map<string, unknown>();
  /** When a consumer last asked for bytes; background completion yields to them. */
  private lastReadAt = 0;
  /** Labelled children for the disk hit path, which runs for every cached read. */
  private readonly disk$;
  /** Counter values already written to the stats record, so each record holds increments only. */
  private recorded: Counters = {};
  private recording: Promise<void> = Promise.resolve();
  private readonly statsTimer: NodeJS.Timeout | undefined;
  /** Work nobody awaits (fetches, read-ahead): close() lets it finish, or aborts it, before closing the caches. */
  private readonly background = new Set<Promise<void>>();
  private readonly closing = new AbortController();
  /** Chunks read, per layer, when the source learns checkpoints (to pick the ones reads needed). */
  private readonly readChunks = new ReadChunks();
  private readonly learns: boolean;

  constructor(opts: StorageOptions) {
    // Each chunk fetch in flight listens on it (deadlineSignal) until the fetch ends: as many as
    // fetches in flight, not a leak, but Node warned of one past 10 (seen in CI under many readers).
    setMaxListeners(0, this.closing.signal);
    this.disk = opts.disk;
    this.inflight = opts.disk.inflight;
    this.remote = opts.remote;
    this.source = opts.source;
    this.source.useCaches?.({ dir: opts.disk.dir, remote: opts.remote, log: opts.logger });
    this.readTimeoutMs = opts.readTimeoutMs ?? 30_000;
    this.backoffMs = opts.retryBackoffMs ?? 100;
    this.remoteConcurrency = opts.remoteConcurrency ?? 8;
    this.readahead = opts.readaheadChunks ?? readaheadFromEnv('CLIP_READAHEAD_CHUNKS') ?? 4;
    this.coldReadahead = opts.coldReadaheadChunks ?? readaheadFromEnv('CLIP_COLD_READAHEAD_CHUNKS') ?? 0;
    this.metrics = opts.metrics ?? new StorageMetrics();
    this.log = opts.logger ?? silentLogger;
    this.learns = typeof this.source.learnedCheckpoints === 'function';
    const tier = { tier: 'disk' } as const;
    this.disk$ = {
      seconds: this.metrics.fetchSeconds.labels(tier),
      requests: this.metrics.requests.labels(tier),
      hits: this.metrics.hits.labels(tier),
      misses: this.metrics.misses.labels(tier),
      bytes: this.metrics.bytes.labels(tier),
    };
    const every = opts.statsIntervalMs ?? 300_000;
    if (every > 0) {
      this.statsTimer = setInterval(() => void this.recordStats(), every);
      this.statsTimer.unref();
    }
  }

  /** Write the counters' increments since the last record to the cache directory's stats; never throws. */
  recordStats(): Promise<void> {
    this.recording = this.recording.then(async () => {
      try {
        const now = await this.metrics.snapshot();
        const delta: Counters = {};
        for (const [k, v] of Object.entries(now)) {
          if (k === 'breakerOpen') continue; // a state, not a count
          delta[k] = v - (this.recorded[k] ?? 0);
        }
        await recordStats(this.disk.dir, delta);
        this.recorded = now;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, dir: this.disk.dir }, 'cannot record cache stats');
      }
    });
    return this.recording;
  }

  /** Bytes [offset, offset + length) of the uncompressed layer, cut at its end. */
  async read(layer: LayerRecord, offset: number, length: number, opts: ReadOptions = {}): Promise<Buffer> {
    const end = rangeEnd(layer, offset, length);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(end - offset);
    this.lastReadAt = Date.now();
    await this.fill(layer, offset, end - offset, opts.signal, out);
    return out;
  }

  /**
   * Make [offset, offset + length) ready for readers without returning it (a startup profile's
   * prefetch): chunks not on disk are fetched as a read would fetch them, chunks on disk not yet
   * verified by this process are verified; nothing is copied out, so a prefetch holds no buffer of
   * its pieces. Returns how many bytes of the layer that covers (cut at its end).
   */
  async warm(layer: LayerRecord, offset: number, length: number, opts: ReadOptions = {}): Promise<number> {
    const end = rangeEnd(layer, offset, length);
    if (end <= offset) return 0;
    const first = Math.floor(offset / layer.chunkSize);
    const last = Math.floor((end - 1) / layer.chunkSize);
    this.lastReadAt = Date.now();
    if (this.learns) this.readChunks.note(layer, first, last);
    const lease = this.disk.tryAcquire(layer) ?? (await this.disk.acquire(layer));
    try {
      // What the disk tier had counts as bytes from it, as a read's would: the reads this makes
      // ready are then answered where nothing is counted (reader threads), and a mount's tier
      // figures would otherwise say nothing came from disk.
      if (lease.file.allVerified(first, last)) {
        this.disk$.bytes.inc(end - offset);
        return end - offset;
      }
      const missing = await lease.file.missing(first, last);
      const checked = await this.checkDisk(layer, lease, first, last, missing);
      this.disk$.hits.inc(checked.size);
      const cs = layer.chunkSize;
      const fetched = missing.reduce((n, i) => n + Math.max(0, Math.min(end, (i + 1) * cs) - Math.max(offset, i * cs)), 0);
      if (end - offset > fetched) this.disk$.bytes.inc(end - offset - fetched);
      if (missing.length) {
        this.disk$.misses.inc(missing.length);
        const d = deadlineSignal(this.readTimeoutMs, typeof opts.signal === 'function' ? opts.signal() : opts.signal);
        await this.ensure(layer, lease, missing, d.signal).finally(d.done);
      }
      return end - offset;
    } finally {
      lease.release();
    }
  }

  /**
   * Fill `target` with the layer's bytes from `offset` (a caller's reusable buffer: no allocation
   * on a disk hit). Returns how many bytes were filled (fewer at the layer's end).
   */
  async readInto(layer: LayerRecord, offset: number, target: Buffer, opts: ReadOptions = {}): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new ClipError('EINVAL', `bad offset ${offset}`, { object: layer.diffId });
    const n = Math.max(0, Math.min(target.length, layer.uncompressedSize - offset));
    this.lastReadAt = Date.now();
    if (n > 0) await this.fill(layer, offset, n, opts.signal, n === target.length ? target : target.subarray(0, n));
    return n;
  }

  /**
   * The same bytes as a stream, for big reads: windows of a few chunks, the next one fetched while
   * the current one is consumed, so memory stays at two windows whatever the length. Pieces may be
   * verified chunks shared with other readers and the remote cache's queue: never modify them.
   */
  stream(layer: LayerRecord, offset: number, length: number, opts: ReadOptions & { windowBytes?: number } = {}): Readable {
    const cs = layer.chunkSize;
    const window = Math.max(cs, Math.ceil((opts.windowBytes ?? 4 * 1024 * 1024) / cs) * cs);
    const end = Math.min(offset + Math.max(0, length), layer.uncompressedSize);
    // Pieces, not one copied window: fetched chunks go out as they are (less to allocate and collect).
    const readWindow = (from: number, n: number): Promise<Buffer[]> => {
      this.lastReadAt = Date.now();
      return this.fill(layer, from, n, opts.signal);
    };
    async function* windows(): AsyncGenerator<Buffer> {
      rangeEnd(layer, offset, length);
      let pos = offset;
      const next = (from: number): [Promise<Buffer[]>, number] | undefined => {
        if (from >= end) return undefined;
        const to = Math.min(end, (Math.floor(from / window) + 1) * window);
        const p = readWindow(from, to - from);
        p.catch(() => {});
        return [p, to];
      };
      let current = next(pos);
      while (current) {
        const pieces = await current[0];
        pos = current[1];
        current = next(pos);
        yield* pieces;
      }
    }
    return Readable.from(windows(), { objectMode: false, highWaterMark: 1 });
  }

  /**
   * Fetch every chunk of `layer` not yet on disk, `windowChunks` at a time, at most `bytesPerSecond`,
   * and with `idleMs` only after consumers have been quiet that long (background completion, so a
   * long-running reader stops depending on the network).
   */
  async complete(
    layer: LayerRecord,
    opts: { bytesPerSecond?: number; windowChunks?: number; idleMs?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    const count = chunkCount(layer);
    const step = opts.windowChunks ?? 8;
    for (let first = 0; first < count && !opts.signal?.aborted; first += step) {
      if (opts.idleMs) {
        for (let quiet = Date.now() - this.lastReadAt; quiet < opts.idleMs && !opts.signal?.aborted; quiet = Date.now() - this.lastReadAt) {
          await sleep(opts.idleMs - quiet, opts.signal);
        }
        if (opts.signal?.aborted) break;
      }
      const last = Math.min(count, first + step) - 1;
      const started = Date.now();
      const lease = await this.disk.acquire(layer);
      let fetched = 0;
      try {
        const missing = await lease.file.missing(first, last);
        if (missing.length === 0) continue;
        const d = deadlineSignal(this.readTimeoutMs, opts.signal);
        await this.ensure(layer, lease, missing, d.signal).finally(d.done);
        fetched = missing.reduce((n, i) => n + chunkLength(layer, i), 0);
      } finally {
        lease.release();
      }
      if (opts.bytesPerSecond) {
        const wait = (fetched / opts.bytesPerSecond) * 1000 - (Date.now() - started);
        if (wait > 0) await sleep(wait, opts.signal);
      }
    }
  }

  /** Wait (at most `deadlineMs`) for chunks still being published to the remote cache. */
  async flush(deadlineMs: number): Promise<number> {
    return this.remote ? this.remote.flush(deadlineMs) : 0;
  }

  /**
   * Let fetches in flight finish and flush publications (at most `flushMs` each), abort what is
   * left, then close the remote cache and the disk cache: no chunk write is cut off by a closed file.
   */
  async close(opts: { flushMs?: number } = {}): Promise<void> {
    clearInterval(this.statsTimer);
    if (this.background.size && opts.flushMs) {
      const grace = new AbortController();
      await Promise.race([Promise.allSettled([...this.background]), sleep(opts.flushMs, grace.signal).catch(() => {})]);
      grace.abort();
    }
    this.closing.abort();
    while (this.background.size) await Promise.allSettled([...this.background]);
    if (this.remote) {
      if (opts.flushMs) await this.remote.flush(opts.flushMs);
      await this.remote.close();
    }
    await this.recordStats();
    await this.disk.close();
  }

  /**
   * Bytes [offset, offset + length) (within the layer): copied into `out` when given (then [out]),
   * else as pieces in order: fetched chunks (sliced, not copied) and runs read from disk.
   */
  private async fill(layer: LayerRecord, offset: number, length: number, signal?: AbortSignal | (() => AbortSignal), out?: Buffer): Promise<Buffer[]> {
    const cs = layer.chunkSize;
    const end = offset + length;
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    const ahead = this.aheadOf(layer, offset, end, last);
    if (this.learns) this.readChunks.note(layer, first, last);
    const lease = this.disk.tryAcquire(layer) ?? (await this.disk.acquire(layer));
    try {
      let missing: number[] = [];
      // Chunks read whole from disk and verified just now (the first read of each in this process).
      let checked: Map<number, Buffer> | undefined;
      if (!lease.file.allVerified(first, last)) {
        missing = await lease.file.missing(first, last);
        checked = await this.checkDisk(layer, lease, first, last, missing);
      }
      if (missing.length) {
        this.disk$.misses.inc(missing.length);
        this.log.debug({ layer: layer.diffId, tier: 'disk', first, last, missing: missing.length }, 'disk cache miss: fetching');
      } else if (this.log.isLevelEnabled('trace')) {
        this.log.trace({ layer: layer.diffId, tier: 'disk', offset, length }, 'disk cache hit');
      }
      // Keep a sequential reader's window filled: refill once half of it is used up.
      const refill = ahead && this.needsRefill(layer, lease, ahead) ? ahead : undefined;
      if (refill && !missing.length) {
        this.inBackground(this.prefetch(layer, refill).catch((err: unknown) => this.log.debug({ err, layer: layer.diffId }, 'readahead failed')));
      }
      let got = new Map<number, Buffer>();
      if (missing.length) {
        const d = deadlineSignal(this.readTimeoutMs, typeof signal === 'function' ? signal() : signal);
        got = await this.ensure(layer, lease, missing, d.signal, refill).finally(d.done);
      }
      if (checked) for (const [i, buf] of checked) got.set(i, buf);
      const pieces: Buffer[] = [];
      for (let i = first; i <= last; ) {
        const chunk = got.get(i);
        if (chunk) {
          const s = Math.max(offset, i * cs);
          const e = Math.min(end, (i + 1) * cs);
          if (out) chunk.copy(out, s - offset, s - i * cs, e - i * cs);
          else pieces.push(chunk.subarray(s - i * cs, e - i * cs));
          if (checked?.has(i)) {
            this.disk$.hits.inc();
            this.disk$.bytes.inc(e - s);
          }
          i++;
          continue;
        }
        let j = i;
        while (j < last && !got.has(j + 1)) j++;
        const s = Math.max(offset, i * cs);
        const e = Math.min(end, (j + 1) * cs);
        const target = out ? out.subarray(s - offset, e - offset) : Buffer.allocUnsafe(e - s);
        // One disk read in 16 is timed: a histogram observation cost a sixth of a warm READ's
        // main-thread time (bench/mount/RESULTS.md); the counters below stay exact.
        const endTimer = (this.diskReads++ & 15) === 0 ? this.disk$.seconds.startTimer() : undefined;
        await lease.file.read(target, s);
        endTimer?.();
        if (!out) pieces.push(target);
        this.disk$.requests.inc();
        this.disk$.hits.inc(j - i + 1);
        this.disk$.bytes.inc(e - s);
        i = j + 1;
      }
      return out ? [out] : pieces;
    } finally {
      lease.release();
    }
  }

  /**
   * Read and verify the chunks of [first, last] that are marked on disk but not yet verified by
   * this process. Returns their bytes; a chunk that fails its sha256 is a miss: counted, logged,
   * and added to `missing` (kept sorted) to be fetched again.
   */
  private async checkDisk(layer: LayerRecord, lease: LayerLease, first: number, last: number, missing: number[]): Promise<Map<number, Buffer>> {
    const todo: number[] = [];
    for (let i = first, k = 0; i <= last; i++) {
      if (missing[k] === i) k++;
      else if (!lease.file.verified(i)) todo.push(i);
    }
    const checked = new Map<number, Buffer>();
    if (!todo.length) return checked;
    const endTimer = this.disk$.seconds.startTimer();
    const bufs = await Promise.all(todo.map((i) => lease.file.readVerified(i)));
    endTimer();
    this.disk$.requests.inc(todo.length);
    todo.forEach((i, k) => {
      const buf = bufs[k];
      if (buf) return void checked.set(i, buf);
      this.metrics.verifyFailures.inc({ tier: 'disk' });
      this.log.warn({ layer: layer.diffId, tier: 'disk', chunk: i, path: lease.file.path }, 'cached chunk failed verification: fetching it again');
      missing.push(i);
    });
    missing.sort((a, b) => a - b);
    return checked;
  }

  /** The verified bytes of each chunk in `missing` not verified on disk by now (those are left out). */
  private async ensure(
    layer: LayerRecord,
    lease: LayerLease,
    missing: number[],
    signal: AbortSignal,
    ahead?: [number, number],
  ): Promise<Map<number, Buffer>> {
    const extra = ahead ? await lease.file.missing(ahead[0], ahead[1]) : [];
    const waits: [number, Promise<Buffer | undefined>][] = [];
    const owned = new Map<number, Deferred<Buffer>>();
    for (const i of missing) {
      const key = chunkKey(layer, i);
      const flying = this.inflight.get(key);
      if (flying) {
        this.metrics.singleflightJoins.inc();
        // A chunk brought along by a wider fetch may not arrive, and another mount's store may
        // close before its fetch ends: then fetch it as if no one had.
        const refetch = (err: unknown): boolean => err === NOT_DELIVERED || (flying.owner !== this && isClosedError(err) && !this.closing.signal.aborted);
        const joined = flying.promise.catch((err: unknown) => (refetch(err) ? this.ensure(layer, lease, [i], signal).then((m) => m.get(i)) : Promise.reject(err)));
        waits.push([i, joined]);
        continue;
      }
      if (lease.file.verified(i)) continue; // filled since we looked (marked by another process: fetched, not trusted unchecked)
      const d = this.fly(key);
      owned.set(i, d);
      waits.push([i, d.promise]);
    }
    // Read-ahead chunks ride in the same request; nobody waits for them here.
    const before = new Set(owned.keys());
    this.claim(layer, lease, extra, owned);
    const aheadOnly = new Set([...owned.keys()].filter((i) => !before.has(i)));
    if (owned.size > 0) this.inBackground(this.fetch(layer, owned, aheadOnly, ahead ? ahead[0] - 1 + this.coldReadahead : undefined));
    const bufs = await untilAborted(Promise.all(waits.map((w) => w[1])), signal, (reason) =>
      (reason as Error)?.name === 'TimeoutError'
        ? new ClipError('ETIMEOUT', `read not satisfied within ${this.readTimeoutMs} ms`, {
            object: layer.diffId,
            cause: this.lastSourceError.get(layer.diffId),
          })
        : reason,
    );
    const got = new Map<number, Buffer>();
    waits.forEach((w, k) => {
      const buf = bufs[k];
      if (buf) got.set(w[0], buf);
    });
    return got;
  }

  /**
   * [first, last] chunks to read ahead of a read of [offset, end) ending in chunk `last`, if it
   * starts where a recent read of the layer ended (a sequential reader); none for random access.
   */
  private aheadOf(layer: LayerRecord, offset: number, end: number, last: number): [number, number] | undefined {
    let ends = this.readEnds.get(layer.diffId);
    if (!ends) this.readEnds.set(layer.diffId, (ends = []));
    const k = ends.indexOf(offset);
    if (k >= 0) ends.splice(k, 1);
    ends.push(end);
    if (ends.length > READERS_TRACKED) ends.shift();
    const count = chunkCount(layer);
    if (this.readahead <= 0 || k < 0 || last + 1 >= count) return undefined;
    return [last + 1, Math.min(count - 1, last + this.readahead)];
  }

  /** True when the first half of the read-ahead window has a chunk neither on disk nor in flight. */
  private needsRefill(layer: LayerRecord, lease: LayerLease, ahead: [number, number]): boolean {
    const stop = Math.min(ahead[1], ahead[0] + (this.readahead >> 1));
    for (let i = ahead[0]; i <= stop; i++) {
      if (!lease.file.knownPresent(i) && !this.inflight.has(chunkKey(layer, i))) return true;
    }
    return false;
  }

  private inBackground(work: Promise<void>): void {
    this.background.add(work);
    const forget = (): void => void this.background.delete(work);
    work.then(forget, forget);
  }

  /** Fetch chunks ahead of a sequential reader that are neither on disk nor in flight. */
  private async prefetch(layer: LayerRecord, ahead: [number, number]): Promise<void> {
    if (this.closing.signal.aborted) return;
    const lease = this.disk.tryAcquire(layer) ?? (await this.disk.acquire(layer));
    try {
      const owned = new Map<number, Deferred<Buffer>>();
      this.claim(layer, lease, await lease.file.missing(ahead[0], ahead[1]), owned);
      if (owned.size > 0) {
        this.log.debug({ layer: layer.diffId, first: ahead[0], chunks: owned.size }, 'reading ahead');
        this.inBackground(this.fetch(layer, owned, new Set(owned.keys()), ahead[0] - 1 + this.coldReadahead));
      }
    } finally {
      lease.release();
    }
  }

  /** Register a fetch for each chunk no one is fetching and not on disk; adds them to `owned`. */
  private claim(layer: LayerRecord, lease: LayerLease, chunks: number[], owned: Map<number, Deferred<Buffer>>): void {
    for (const i of chunks) {
      const key = chunkKey(layer, i);
      if (owned.has(i) || this.inflight.has(key) || lease.file.knownPresent(i)) continue;
      owned.set(i, this.fly(key));
    }
  }

  /** Register a fetch of ours in flight under `key`, forgotten once it settles. */
  private fly(key: string): Deferred<Buffer> {
    const d = deferred<Buffer>();
    const entry: InflightChunk = { promise: d.promise, owner: this };
    this.inflight.set(key, entry);
    const forget = (): void => {
      if (this.inflight.get(key) === entry) this.inflight.delete(key);
    };
    d.promise.then(forget, forget);
    return d;
  }

  /**
   * Settle every deferred in `owned`: from the remote cache, else from the source. Chunks in
   * `aheadOnly` (read ahead, nobody asked) after `coldLast` (the reader's next coldReadahead
   * chunks) go to the source only if a fetch brings them along; the others the remote cache lacks
   * are settled NOT_DELIVERED (a reader who joined fetches them). Never throws.
   */
  private async fetch(layer: LayerRecord, owned: Map<number, Deferred<Buffer>>, aheadOnly?: Set<number>, coldLast = Infinity): Promise<void> {
    const { signal, done } = deadlineSignal(this.readTimeoutMs, this.closing.signal);
    let lease: LayerLease | undefined;
    try {
      lease = await this.disk.acquire(layer);
      let pending = [...owned.keys()].sort((a, b) => a - b);
      if (this.remote?.available) pending = await this.fetchRemote(layer, lease, pending, owned);
      if (aheadOnly?.size) {
        pending = pending.filter((i) => {
          if (!aheadOnly.has(i) || i <= coldLast) return true;
          owned.get(i)!.reject(NOT_DELIVERED);
          owned.delete(i);
          this.inflight.delete(chunkKey(layer, i)); // now: a fetch may bring it along
          return false;
        });
      }
      if (pending.length > 0) await this.fetchSource(layer, lease, pending, owned, signal);
    } catch (err) {
      this.log.error({ err, layer: layer.diffId }, 'chunk fetch failed');
      for (const d of owned.values()) d.reject(isClipError(err) ? err : new ClipError('ENETWORK', 'chunk fetch failed', { object: layer.diffId, cause: err }));
    } finally {
      done();
      lease?.release();
    }
  }

  /** Returns the chunks the remote cache could not give. */
  private async fetchRemote(layer: LayerRecord, lease: LayerLease, chunks: number[], owned: Map<number, Deferred<Buffer>>): Promise<number[]> {
    const remote = this.remote!;
    const misses: number[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const i = chunks[next++]!;
        const buf = remote.available ? await remote.fetchChunk(layer.chunkDigest(i), chunkLength(layer, i), { layer: layer.diffId, chunk: i }) : null;
        if (!buf) {
          misses.push(i);
          continue;
        }
        await this.keep(lease, i, buf, 'remote');
        owned.get(i)!.resolve(buf);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.remoteConcurrency, chunks.length) }, worker));
    const got = chunks.length - misses.length;
    this.log.debug({ layer: layer.diffId, tier: 'remote', hits: got, misses: misses.length }, 'remote cache lookup');
    return misses.sort((a, b) => a - b);
  }

  private async fetchSource(
    layer: LayerRecord,
    lease: LayerLease,
    chunks: number[],
    owned: Map<number, Deferred<Buffer>>,
    signal: AbortSignal,
  ): Promise<void> {
    const pending = new Set(chunks);
    const digestFailures = new Map<number, number>();
    let lastErr: unknown;
    let corruptRuns = 0;
    for (let attempt = 0; pending.size > 0 && !signal.aborted; attempt++) {
      if (attempt > 0) await sleep(Math.min(this.backoffMs * 2 ** (attempt - 1), 2000), signal);
      if (signal.aborted) break;
      // Run by run, from the pending set as it is now: one fetch may bring later runs along.
      for (let from = 0; ; ) {
        const run = runs([...pending].filter((i) => i >= from).sort((a, b) => a - b))[0];
        if (!run) break;
        const [first, last] = run;
        from = last + 1;
        try {
          await this.fetchRun(layer, lease, first, last, owned, pending, digestFailures, signal);
        } catch (err) {
          lastErr = err;
          if (this.closing.signal.aborted) break; // abandoned at close: nobody waits for it
          this.lastSourceError.set(layer.diffId, err);
          this.metrics.errors.inc({ tier: 'source' });
          this.log.warn({ layer: layer.diffId, tier: 'source', first, last, attempt, err: (err as Error).message }, 'source fetch failed');
          // Undecodable bytes (a flipped bit in the compressed stream) are a verification failure:
          // retried once, like a chunk whose digest does not match.
          if (isClipError(err) && (err.code === 'ECORRUPT' || err.code === 'EDIGEST')) {
            this.metrics.verifyFailures.inc({ tier: 'source' });
            this.source.invalidate?.(layer, first * layer.chunkSize, Math.min((last + 1) * layer.chunkSize, layer.uncompressedSize));
            if (++corruptRuns < 2) continue;
          }
          if (isClipError(err) && PERMANENT.has(err.code)) {
            for (const i of pending) owned.get(i)!.reject(err);
            return;
          }
        }
      }
    }
    if (pending.size === 0) this.lastSourceError.delete(layer.diffId);
    for (const i of pending) {
      owned
        .get(i)!
        .reject(
          this.closing.signal.aborted
            ? closedError(new ClipError('ENETWORK', `chunk ${i} not fetched: the store was closed`, { object: layer.diffId }))
            : signal.aborted
              ? new ClipError('ETIMEOUT', `chunk ${i} not fetched within ${this.readTimeoutMs} ms`, { object: layer.diffId, cause: lastErr })
              : new ClipError('ENETWORK', `chunk ${i} could not be fetched`, { object: layer.diffId, cause: lastErr }),
        );
    }
  }

  /**
   * One source request for chunks first..last, widened to every whole chunk the source inflates
   * anyway; settles each chunk as its bytes arrive, with at most WRITES_IN_FLIGHT verified chunks
   * waiting for their disk write and one being filled. Chunks of the
   * widening that are neither on disk nor being fetched are claimed (readers may join them),
   * verified and kept like requested ones; edge chunks the span only partly covers are not fetched.
   */
  private async fetchRun(
    layer: LayerRecord,
    lease: LayerLease,
    first: number,
    last: number,
    owned: Map<number, Deferred<Buffer>>,
    pending: Set<number>,
    digestFailures: Map<number, number>,
    signal: AbortSignal,
  ): Promise<void> {
    const cs = layer.chunkSize;
    const count = chunkCount(layer);
    let [wideFirst, wideLast] = [first, last];
    const span = this.source.span?.(layer, first * cs, Math.min((last + 1) * cs, layer.uncompressedSize));
    if (span) {
      wideFirst = Math.min(first, Math.ceil(span.start / cs));
      wideLast = span.end >= layer.uncompressedSize ? count - 1 : Math.max(last, Math.floor(span.end / cs) - 1);
      wideLast = Math.min(wideLast, last + Math.max(1, Math.floor(BROUGHT_ALONG_MAX_BYTES / cs)));
    }
    const extras = new Map<number, Deferred<Buffer>>();
    if (wideFirst < first || wideLast > last) {
      const around = (await lease.file.missing(wideFirst, wideLast)).filter((i) => i < first || i > last);
      this.claim(layer, lease, around, extras);
    }
    // Chunks this request settles: the run, pending chunks of this fetch it reaches, claimed extras.
    const wanted = (i: number): boolean => pending.has(i) || extras.has(i);
    let stop = last;
    for (let i = wideLast; i > last; i--) {
      if (wanted(i)) {
        stop = i;
        break;
      }
    }
    let begin = first;
    for (let i = wideFirst; i < first; i++) {
      if (wanted(i)) {
        begin = i;
        break;
      }
    }
    const start = begin * cs;
    const end = Math.min((stop + 1) * cs, layer.uncompressedSize);
    const m = this.metrics;
    m.requests.inc({ tier: 'source' });
    this.log.debug({ layer: layer.diffId, tier: 'source', start, end, chunks: stop - begin + 1, extra: extras.size }, 'fetching from source');
    const endTimer = m.fetchSeconds.startTimer({ tier: 'source' });
    // Chunks being written to the disk cache (each handed over once written): waited for before the lease goes.
    const writes: Promise<void>[] = [];
    let written = 0; // writes[0..written) have been waited for
    try {
      const body = await this.source.readUncompressed(layer, start, end, signal);
      // A chunk within one piece of a source whose pieces are never written again is that piece's
      // view, not a copy (bench/index/RESULTS.md, session 13: copies were a tenth of the server's
      // main-thread time in a profiled start).
      const views = this.source.stablePieces?.(layer) === true;
      let i = begin;
      // Chunks nobody here wants (on disk, or another fetch's) are counted through, not copied.
      let buf: Buffer | undefined;
      let fill = 0;
      for await (const raw of body) {
        const piece = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
        let off = 0;
        while (off < piece.length && i <= stop) {
          const len = chunkLength(layer, i);
          const n = Math.min(piece.length - off, len - fill);
          if (wanted(i)) {
            if (fill === 0 && n === len && views) buf = piece.subarray(off, off + n);
            else (buf ??= Buffer.allocUnsafe(len)).set(piece.subarray(off, off + n), fill);
          }
          fill += n;
          off += n;
          m.bytes.inc({ tier: 'source' }, n);
          if (fill < len) continue;
          if (buf && pending.has(i)) this.acceptFromSource(layer, lease, i, buf, owned, pending, digestFailures, writes);
          else if (buf && extras.has(i)) this.acceptExtra(layer, lease, i, buf, extras.get(i)!, writes);
          extras.delete(i);
          // A slow disk (a datasync per chunk when durable) must not let the inflated chunks pile up.
          while (writes.length - written > WRITES_IN_FLIGHT) await writes[written++];
          i++;
          fill = 0;
          buf = undefined;
        }
        if (i > stop) break;
      }
      if (i <= last) throw new ClipError('ENETWORK', `source ended at byte ${i * cs + fill} of ${end}`, { object: layer.diffId });
    } finally {
      endTimer();
      for (const d of extras.values()) d.reject(NOT_DELIVERED);
      await Promise.all(writes);
    }
  }

  /** A chunk brought along by a wider fetch: kept only if verified; never retried. */
  private acceptExtra(layer: LayerRecord, lease: LayerLease, i: number, buf: Buffer, d: Deferred<Buffer>, writes: Promise<void>[]): void {
    const digest = layer.chunkDigest(i);
    if (!createHash('sha256').update(buf).digest().equals(digest)) {
      this.metrics.verifyFailures.inc({ tier: 'source' });
      this.log.warn({ layer: layer.diffId, tier: 'source', chunk: i }, 'source chunk (brought along) failed verification');
      this.forgetSourceBytes(layer, i);
      d.reject(NOT_DELIVERED);
      return;
    }
    this.metrics.hits.inc({ tier: 'source' });
    if (this.remote) this.remote.publish(digest, ownBuffer(buf));
    this.deliver(lease, i, buf, d, writes);
  }

  private acceptFromSource(
    layer: LayerRecord,
    lease: LayerLease,
    i: number,
    buf: Buffer,
    owned: Map<number, Deferred<Buffer>>,
    pending: Set<number>,
    digestFailures: Map<number, number>,
    writes: Promise<void>[],
  ): void {
    const digest = layer.chunkDigest(i);
    if (!createHash('sha256').update(buf).digest().equals(digest)) {
      const failures = (digestFailures.get(i) ?? 0) + 1;
      digestFailures.set(i, failures);
      this.metrics.verifyFailures.inc({ tier: 'source' });
      this.log.warn({ layer: layer.diffId, tier: 'source', chunk: i, failures }, 'source chunk failed verification');
      this.forgetSourceBytes(layer, i);
      if (failures >= 2) {
        // Twice from the source: the index's digest, or the source, is wrong. Whoever can tell
        // which (an audit of the whole layer) is told.
        this.onSourceMismatch?.(layer);
        pending.delete(i);
        owned.get(i)!.reject(new ClipError('EDIGEST', `chunk ${i} does not match its recorded sha256 (twice)`, { object: layer.diffId }));
      }
      return;
    }
    this.metrics.hits.inc({ tier: 'source' });
    if (this.remote) this.remote.publish(digest, ownBuffer(buf));
    pending.delete(i);
    this.deliver(lease, i, buf, owned.get(i)!, writes);
  }

  /**
   * Write a verified chunk from the source to the disk cache, then hand it to its readers, without
   * holding up the fetch: its stream goes on inflating and verifying the next chunks while this one
   * is written, instead of waiting for two trips to the libuv pool per chunk (bench/index/RESULTS.md,
   * profiled time). A read still returns only chunks the disk cache holds.
   */
  private deliver(lease: LayerLease, i: number, buf: Buffer, d: Deferred<Buffer>, writes: Promise<void>[]): void {
    writes.push(this.keep(lease, i, buf, 'source').then(() => d.resolve(buf)));
  }

  /**
   * Checkpoints the registry tier learned while inflating this layer, and those added and still
   * trusted, that begin and end the runs of chunks this store's reads asked for (what another node
   * needs to fetch just those), by offset: for a startup profile to carry.
   */
  learnedCheckpoints(layer: LayerRecord): LearnedCheckpoint[] {
    const all = this.source.learnedCheckpoints?.(layer) ?? [];
    return all.length ? learnedForReads(all, this.readChunks.runs(layer), layer) : [];
  }

  /** The mount's profile is settled: the source learns no more and drops what it captured. */
  stopLearning(): void {
    this.source.stopLearning?.();
  }

  /**
   * The reads another node's learned checkpoints were handed over for (a profile's prefetch) are
   * done: the source keeps their windows deflated, inflating one again when a fetch starts there.
   */
  async packLearned(): Promise<number> {
    return (await this.source.packLearned?.()) ?? 0;
  }

  /**
   * Another node's learned checkpoints for this layer: from now on a registry read starts from the
   * nearest of the index's and these. Hints only: bytes inflated from one that fail their chunk's
   * digest drop it, and the retry starts from the index's own. Returns how many were new.
   */
  addLearnedCheckpoints(layer: LayerRecord, list: readonly LearnedCheckpoint[]): number {
    return this.source.addLearnedCheckpoints?.(layer, list) ?? 0;
  }

  /**
   * The whole layer, uncompressed, straight from the source (from its start, not through the
   * index's checkpoints or chunk table): for audits that must not trust the index.
   */
  sourceStream(layer: LayerRecord, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    return this.source.readUncompressed(layer, 0, layer.uncompressedSize, signal);
  }

  /** Chunk i failed verification: the source must not serve a copy it kept of those bytes again. */
  private forgetSourceBytes(layer: LayerRecord, i: number): void {
    this.source.invalidate?.(layer, i * layer.chunkSize, i * layer.chunkSize + chunkLength(layer, i));
  }

  /** Write a verified chunk to the disk cache; a failing disk costs the cache, not the read. */
  private async keep(lease: LayerLease, i: number, buf: Buffer, from: Tier): Promise<void> {
    try {
      await lease.file.writeChunk(i, buf);
      this.disk.noteWritten(buf.length);
    } catch (err) {
      this.metrics.errors.inc({ tier: 'disk' });
      this.log.warn({ layer: lease.file.layer.diffId, tier: 'disk', from, chunk: i, err: (err as Error).message }, 'cache write failed');
    }
  }
}

/** CLIP_READAHEAD_CHUNKS, CLIP_COLD_READAHEAD_CHUNKS: defaults for comparisons (bench/index/published-mount.ts). */
function readaheadFromEnv(env: string): number | undefined {
  return wholeNumberSetting({ env }, 0, 64, 'chunks');
}

/**
 * The chunk in a buffer of its own: what waits in the remote cache's queue must not hold alive
 * the larger inflated piece a chunk may be a view of (the queue counts the chunk's bytes).
 */
function ownBuffer(chunk: Buffer): Buffer {
  return chunk.byteOffset === 0 && chunk.length === chunk.buffer.byteLength ? chunk : Buffer.from(chunk);
}

/** Sorted chunk indexes as [first, last] runs of adjacent chunks. */
export function runs(sorted: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const i of sorted) {
    const r = out[out.length - 1];
    if (r && r[1] + 1 === i) r[1] = i;
    else out.push([i, i]);
  }
  return out;
}

/** Where [offset, offset + length) ends in the layer (cut at its end); EINVAL naming the layer for a bad range. */
function rangeEnd(layer: LayerRecord, offset: number, length: number): number {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ClipError('EINVAL', `bad range offset=${offset} length=${length}`, { object: layer.diffId });
  }
  return Math.min(offset + length, layer.uncompressedSize);
}
