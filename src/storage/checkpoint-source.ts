/**
 * The registry tier: a layer's uncompressed range [start, end) produced by ranged reads of the
 * compressed blob, inflated from checkpoints. Bytes are not verified here: the read path checks
 * every chunk against its digest (and calls invalidate() on a failure, so a retry refetches).
 *
 * Fetches are merged by checkpoint span (the uncompressed bytes between two checkpoints): a span is
 * inflated once, by one flight (one range request over a run of adjacent spans), and every read
 * that needs it — arriving while it is being inflated or soon after — takes its bytes from there.
 * So reads whose ranges start from one checkpoint, or a read that starts inside what an earlier
 * fetch inflated, never ask for the same compressed bytes twice (while the span is kept: a bounded
 * LRU of inflated spans). A flight's failure fails every read waiting on it; each retries on its
 * own, and the first retry's flight is joined by the others. CLIP_FETCH_MERGE=0 turns merging off
 * (each read its own request from its checkpoint, as before), for comparisons.
 *
 * Learned checkpoints (learned-checkpoints.ts): a flight learns checkpoints on both sides of the
 * read's start and end and of every chunk boundary it inflates through (the last block boundary
 * at or before, the first at or after), for other nodes: the store picks those its reads needed.
 * Ranges of a layer given another node's learned checkpoints are planned over the index's and
 * those together, so that node fetches from where each read begins to where it ends, not from
 * span to span (its own are not planned over: they would split the spans kept for merging). A
 * handed-over checkpoint is a hint: one whose bytes fail (invalidate(), or a flight that breaks)
 * is dropped, and the retry plans over the index's own. CLIP_LEARN=0 turns learning off (the
 * handed-over checkpoints are used either way); a layer whose bytes failed is not learned on any
 * more (its retries inflate as without learning).
 */
import type { Readable } from 'node:stream';
import { boundAtOrAfter, decodeBounds, type BlockBound } from '../archive/block-bounds.js';
import { WINDOW_BYTES, type LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import { inflateLearning, type LearnTarget } from '../archive/learning-inflate.js';
import { inflateLearningNative, isNativeLearningAvailable } from '../archive/native-learning.js';
import { compressedRangeFor, fetchStart, inflateFrom } from '../archive/random-access.js';
import type { Checkpoint, LayerScan } from '../archive/types.js';
import type { BlobStore } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { LearnedCheckpoints } from './learned-checkpoints.js';
import type { WindowTiers } from './checkpoint-windows.js';
import { layerRecord, type LayerRecord, type LayerSource, type SourceCaches } from './types.js';

export interface CompressedRange {
  checkpoint: Checkpoint;
  /** Blob bytes [start, end) to fetch: start is where inflation from `checkpoint` begins. */
  start: number;
  end: number;
  /** Where inflating [start, end) reaches in the uncompressed stream: the end checkpoint's out, or the layer's size. */
  endOut?: number;
  /** When `checkpoint`'s window is still to be fetched (its window empty until then): the checkpoint with it. */
  loadWindow?: (tiers: WindowTiers) => Promise<Checkpoint>;
}

/** A layer that knows where in its compressed blob a range of its uncompressed stream begins. */
export interface ResumableLayer extends LayerRecord {
  compressedRange(start: number, end: number): CompressedRange;
  /**
   * The first deflate block boundary at or after `out` (index format 3), where a fetch may stop
   * instead of at the next checkpoint; undefined where none is known.
   */
  boundAtOrAfter?(out: number): BlockBound | undefined;
}

export function isResumable(layer: LayerRecord): layer is ResumableLayer {
  return typeof (layer as Partial<ResumableLayer>).compressedRange === 'function';
}

export interface CheckpointSourceOptions {
  /** Merge fetches by checkpoint span (default: on unless CLIP_FETCH_MERGE=0). */
  merge?: boolean;
  /** Inflated spans kept after their flight for reads that need them next (default 48 MiB). */
  keepBytes?: number;
  /** Spans longer than this are not merged: their reads fetch on their own (default 8 MiB). */
  maxSpanBytes?: number;
  /** A kept span no read has used for this long is dropped (default 30 s): a quiet mount holds none. */
  keepMs?: number;
  /**
   * Learn checkpoints where reads begin and end (default: on unless CLIP_LEARN=0). Native zlib
   * stepped block by block: on python's start 1.17x the time and 1.0x the CPU of not learning
   * (bench/index/RESULTS.md; pako instead, CLIP_LEARN_PAKO=1, cost 1.2-1.9x).
   */
  learn?: boolean;
  /** Learned checkpoints kept, of each kind (captured, handed over) (default 256: 8 MiB of windows). */
  maxLearned?: number;
}

/** What merging did, for tests and benchmarks. */
export interface MergeStats {
  /** Range requests made for merged reads. */
  flights: number;
  /** Spans a read took from a flight in progress. */
  joined: number;
  /** Spans a read took from those kept after their flight. */
  kept: number;
  /** Spans fetched. */
  fetched: number;
  /** Kept spans dropped to stay within keepBytes, or invalidated. */
  evicted: number;
  /** Checkpoints learned while inflating. */
  learned: number;
  /** Learned checkpoints dropped because bytes inflated from them failed. */
  learnedDropped: number;
}

/** Inflated spans kept by every source of the process together stay under `bytes` (tests lower it). */
export const processKeep = { bytes: 64 * 1024 * 1024 };
let keptInProcess = 0;
/** Bytes of inflated spans kept now by every source of the process (the server's memory figures). */
export function keptSpanBytes(): number {
  return keptInProcess;
}
/** Every kept span of the process, least recently kept first, with the source keeping it. */
const keptAll = new Map<Span, CheckpointSource>();

export class CheckpointSource implements LayerSource {
  private readonly stores: BlobStore | ((layer: LayerRecord) => BlobStore);
  private readonly merge: boolean;
  private readonly keepBytes: number;
  private readonly maxSpan: number;
  /** Per blob digest: spans by their start (out), in flight or kept. */
  private readonly spans = new Map<string, Map<number, Span>>();
  /** Finished spans, least recently used first, and their bytes. */
  private readonly lru = new Set<Span>();
  private lruBytes = 0;
  private readonly keepMs: number;
  private expiry: NodeJS.Timeout | undefined;
  readonly stats: MergeStats = { flights: 0, joined: 0, kept: 0, fetched: 0, evicted: 0, learned: 0, learnedDropped: 0 };
  /** Learned here: for other nodes (planning over them here would split the spans kept for merging). */
  private readonly captured: LearnedCheckpoints;
  /** Handed over from elsewhere: planned over. */
  private readonly given: LearnedCheckpoints;
  private learning: boolean;
  /** Blob digests of layers whose bytes failed: their retries inflate without learning. */
  private readonly unlearned = new Set<string>();
  /** Native zlib stepped block by block where node allows it (3x pako's speed), else pako. */
  private readonly learner = NATIVE_LEARNING ? inflateLearningNative : inflateLearning;
  /** The store's caches, where checkpoint windows fetched apart are looked for and kept. */
  private caches: SourceCaches | undefined;

  /** One store, or one per layer (an index names where its layers live). */
  constructor(stores: BlobStore | ((layer: LayerRecord) => BlobStore), opts: CheckpointSourceOptions = {}) {
    this.stores = stores;
    this.merge = opts.merge ?? process.env.CLIP_FETCH_MERGE !== '0';
    this.keepBytes = opts.keepBytes ?? 48 * 1024 * 1024;
    this.maxSpan = opts.maxSpanBytes ?? 8 * 1024 * 1024;
    this.keepMs = opts.keepMs ?? 30_000;
    this.learning = opts.learn ?? process.env.CLIP_LEARN !== '0';
    this.captured = new LearnedCheckpoints(opts.maxLearned ?? 256);
    this.given = new LearnedCheckpoints(opts.maxLearned ?? 256);
  }

  /** Memory the spans it keeps hold (their buffers, counted as keepBytes counts them). */
  get keptBytes(): number {
    return this.lruBytes;
  }

  /**
   * Learn no more, and let go of what was captured (up to 8 MiB of windows a store): they are
   * for a startup profile, and once the mount's profile is kept (or another was found) nothing
   * reads them. Handed-over checkpoints stay: reads are planned over them.
   */
  stopLearning(): void {
    this.learning = false;
    this.captured.clear();
  }

  useCaches(caches: SourceCaches): void {
    this.caches = caches;
  }

  /** The checkpoint a range inflates from, its window fetched (beside the range) when the index left it out. */
  private startOf(r: { checkpoint: Checkpoint; loadWindow?: CompressedRange['loadWindow'] }, store: BlobStore, signal: AbortSignal): Checkpoint | Promise<Checkpoint> {
    return r.loadWindow ? r.loadWindow({ store, dir: this.caches?.dir, remote: this.caches?.remote, log: this.caches?.log, signal }) : r.checkpoint;
  }

  /** The layer's learned checkpoints: captured here and handed over (not dropped), by out. */
  learnedCheckpoints(layer: LayerRecord): LearnedCheckpoint[] {
    const all = [...this.given.list(layer), ...this.captured.list(layer)].sort((a, b) => a.out - b.out);
    return all.filter((c, i) => i === 0 || c.out !== all[i - 1]!.out);
  }

  /** Bytes of the windows of the learned checkpoints kept for the layer (both kinds). */
  learnedWindowBytes(layer: LayerRecord): number {
    return this.given.windowBytes(layer) + this.captured.windowBytes(layer);
  }

  /** The reads the handed-over checkpoints were for are done: keep their windows deflated. */
  packLearned(): Promise<number> {
    return this.given.pack();
  }

  /** Plan the layer's reads over these too (EINVAL naming the layer for one that cannot fit it). */
  addLearnedCheckpoints(layer: LayerRecord, list: readonly LearnedCheckpoint[]): number {
    if (layer.compression !== 'gzip') return 0;
    const added = this.given.addAll(layer, list);
    return added;
  }

  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const store = typeof this.stores === 'function' ? this.stores(layer) : this.stores;
    const desc = { digest: layer.digest, size: layer.compressedSize };
    // Refused before any request: a body opened and never read would hold its connection forever.
    if (!DECODABLE.has(layer.compression)) throw new ClipError('EUNSUPPORTED', `unknown layer compression "${String(layer.compression)}"`, { object: layer.digest });
    if (layer.compression === 'none') return store.openBlobRange(desc, start, end, { signal });
    if (!isResumable(layer)) throw new ClipError('EINVAL', 'a compressed layer needs its checkpoints to be read by range', { object: layer.digest });
    const planned = this.withLearned(layer);
    const plan = this.merge ? this.plan(planned, start, end) : undefined;
    if (!plan) {
      const range = cutAtBound(planned, planned.compressedRange(start, end), start, end);
      const [body, from] = await withWindow(store.openBlobRange(desc, range.start, range.end, { signal }), this.startOf(range, store, signal));
      const targets = this.targets(layer, range.checkpoint.out, range.endOut ?? Infinity, start, end);
      const inflated = targets.length
        ? this.learner(from, body, targets, (c) => this.learn(layer, c), layer.digest)
        : inflateFrom(from, body, { compression: layer.compression, name: layer.digest });
      // A learned checkpoint the range starts or stops at may be why it broke.
      const broke = (): void => {
        if (!signal.aborted) this.dropLearned(layer, range.checkpoint.out, range.endOut ?? end);
      };
      const stable = this.yieldsStable(layer, targets.length > 0);
      return closing(cut(stable ? inflated : copied(inflated), range.checkpoint.out, start, end, layer.digest), body, broke);
    }
    signal.throwIfAborted();
    let byStart = this.spans.get(layer.digest);
    if (!byStart) this.spans.set(layer.digest, (byStart = new Map()));
    const need: Span[] = [];
    /** Segments still in flight that a segment of this read continues: this read waits on them too. */
    const continued: Span[] = [];
    let run: PlannedSpan[] = [];
    const launch = (): void => {
      if (!run.length) return;
      const flight = new Flight();
      const spans = run.map((p) => new Span(layer.digest, p, flight));
      for (const s of spans) byStart.set(s.out, s);
      need.push(...spans);
      this.stats.flights++;
      this.stats.fetched += spans.length;
      const targets = this.targets(layer, spans[0]!.out, spans[spans.length - 1]!.endOut, start, end);
      void this.fly(flight, store, desc, layer, spans, targets);
      run = [];
    };
    const take = (s: Span): void => {
      launch();
      if (s.done) {
        this.stats.kept++;
        this.lru.delete(s); // most recently used now
        this.lru.add(s);
        s.usedAt = Date.now();
      } else this.stats.joined++;
      need.push(s);
    };
    // Each checkpoint span may be held in segments: one cut short at a block boundary past the
    // read that fetched it, then continued from there (its last 32 KiB are the window) by later reads.
    let x = start;
    for (const p of plan) {
      while (x < Math.min(end, p.endOut)) {
        let s = usable(byStart.get(p.out));
        while (s && s.endOut <= x) {
          const next = usable(byStart.get(s.endOut));
          if (!next) break;
          s = next;
        }
        if (s && s.out <= x && x < s.endOut) {
          take(s);
          x = s.endOut;
          continue;
        }
        let seg: PlannedSpan = { ...p };
        if (s && s.cut && s.endOut <= x && s.endOut < p.endOut && !s.tainted) {
          // Continue where a segment was cut: at once from its bytes, or once its flight ends.
          const from = s.done ? continuation(s) : undefined;
          if (from || !s.done) {
            launch();
            if (!from) continued.push(s);
            seg = { ...p, out: s.endOut, checkpoint: from ?? p.checkpoint, loadWindow: undefined, start: fetchStart(s.cut), after: from ? undefined : s };
          }
        }
        if (seg.endOut >= end) seg = cutSpan(planned, seg, end);
        run.push(seg); // a continuation heads its run (launched just before): one flight may go on past it
        x = seg.endOut;
      }
    }
    launch();
    // Every flight this read waits on runs while some read waits on it.
    const flights = [...new Set([...need, ...continued].filter((s) => !s.done).map((s) => s.flight))];
    for (const f of flights) f.readers++;
    // A read that is given up (its signal aborted) stops a flight no other read waits on; one
    // that got its bytes lets the flight finish the spans past its end, kept for the next reads.
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      signal.removeEventListener('abort', release);
      for (const f of flights) {
        if (--f.readers === 0 && !f.settled && signal.aborted) {
          f.ctrl.abort();
          this.failFlight(f, new ClipError('ENETWORK', 'range fetch abandoned: no read waits for it any more', { object: layer.digest }));
        }
      }
    };
    signal.addEventListener('abort', release, { once: true });
    return readSpans(need, start, end, signal, release);
  }

  /**
   * A compressed layer's pieces are never written again: a decoder that may write its buffer again
   * is copied from (readUncompressed). An uncompressed layer's HTTP body is not copied here: the
   * read path copies its chunks, once.
   */
  stablePieces(layer: LayerRecord): boolean {
    return layer.compression !== 'none';
  }

  /** True when the decoder for this layer yields buffers it never writes again (native gzip inflation). */
  private yieldsStable(layer: LayerRecord, learning: boolean): boolean {
    return layer.compression === 'gzip' && (!learning || NATIVE_LEARNING);
  }

  /** From the checkpoint before `start` to the one after `end`: all of it is inflated to serve [start, end). */
  span(layer: LayerRecord, start: number, end: number): { start: number; end: number } {
    if (layer.compression === 'none' || !isResumable(layer)) return { start, end };
    const range = cutAtBound(layer, this.withLearned(layer).compressedRange(start, end), start, end);
    return { start: Math.min(start, range.checkpoint.out), end: Math.max(end, Math.min(range.endOut ?? end, layer.uncompressedSize)) };
  }

  /** Forget kept bytes of [start, end) (they failed verification): the next read fetches them again. */
  invalidate(layer: LayerRecord, start: number, end: number): void {
    this.unlearned.add(layer.digest);
    // The learned checkpoint these bytes were inflated from (and any inside them) may be wrong.
    if (isResumable(layer) && (this.given.has(layer) || this.captured.has(layer))) {
      const from = this.withLearned(layer).compressedRange(start, Math.min(start + 1, layer.uncompressedSize)).checkpoint.out;
      this.dropLearned(layer, from, end);
    }
    const byStart = this.spans.get(layer.digest);
    if (!byStart) return;
    for (const s of [...byStart.values()]) {
      if (s.out >= end || s.endOut <= start) continue;
      // One still being inflated is not kept when it ends, and no new read joins it.
      if (!s.done) s.tainted = true;
      this.drop(s);
    }
  }

  /** The layer planned over its index's checkpoints and its learned ones together. */
  private withLearned(layer: ResumableLayer): ResumableLayer {
    if (!this.given.has(layer)) return layer;
    const learned = this.given;
    const over: ResumableLayer = Object.create(layer) as ResumableLayer;
    over.compressedRange = (start: number, end: number): CompressedRange => {
      const r = layer.compressedRange(start, end);
      let { checkpoint, start: from, end: stop, endOut } = r;
      let loadWindow = r.loadWindow;
      const s = learned.atOrBefore(layer, start);
      if (s && s.checkpoint.out > checkpoint.out) {
        checkpoint = s.checkpoint;
        from = fetchStart(s.checkpoint);
        loadWindow = s.loadWindow; // none while the learned checkpoint carries its window
      }
      // Every block before a boundary ends before its `in`.
      const e = learned.atOrAfter(layer, end);
      if (e && e.out > checkpoint.out && (endOut === undefined || e.out < endOut) && e.in < stop) {
        stop = e.in;
        endOut = e.out;
      }
      return { checkpoint, start: from, end: stop, endOut, ...(loadWindow ? { loadWindow } : {}) };
    };
    return over;
  }

  /**
   * Where a fetch over [out, endOut) for a read of [start, end) learns checkpoints: at the read's
   * start and end, and on both sides of every chunk boundary it passes (a chunk it brings along
   * may be the next read's start; the store picks the ones its reads needed). None when not
   * learning, when full, or on a layer whose checkpoints were handed over (it replays another
   * node's reads; learning there would run the slower inflater for what is known already).
   */
  private targets(layer: LayerRecord, out: number, endOut: number, start: number, end: number): LearnTarget[] {
    if (!this.learning || layer.compression !== 'gzip' || this.given.has(layer) || this.captured.full || this.unlearned.has(layer.digest)) return [];
    const at = new Set<number>();
    const stop = Math.min(endOut, layer.uncompressedSize);
    for (const x of [start, end]) if (x > out && x < stop) at.add(x);
    const cs = layer.chunkSize;
    for (let x = Math.ceil((out + 1) / cs) * cs; x < stop; x += cs) at.add(x);
    return [...at].sort((a, b) => a - b).flatMap((x): LearnTarget[] => [{ at: x, kind: 'start' }, { at: x, kind: 'end' }]);
  }

  private learn(layer: LayerRecord, c: LearnedCheckpoint): void {
    if (this.captured.add(layer, c)) this.stats.learned++;
  }

  /** Learned checkpoints at out in [from, to] are not trusted any more. */
  private dropLearned(layer: LayerRecord, from: number, to: number): void {
    this.stats.learnedDropped += this.given.drop(layer, from, to) + this.captured.drop(layer, from, to);
  }

  /** The checkpoint spans covering [start, end), or undefined when one cannot be merged. */
  private plan(layer: ResumableLayer, start: number, end: number): PlannedSpan[] | undefined {
    const out: PlannedSpan[] = [];
    for (let x = start; x < end; ) {
      const r = layer.compressedRange(x, x + 1);
      if (r.endOut === undefined) return undefined;
      const endOut = Math.min(r.endOut, layer.uncompressedSize);
      if (endOut <= x || endOut - r.checkpoint.out > this.maxSpan) return undefined;
      // A span ends where the next one begins (or at the layer's end), else spans would overlap.
      if (endOut < layer.uncompressedSize && layer.compressedRange(endOut, endOut + 1).checkpoint.out !== endOut) return undefined;
      out.push({ out: r.checkpoint.out, endOut, checkpoint: r.checkpoint, start: r.start, end: r.end, ...(r.loadWindow ? { loadWindow: r.loadWindow } : {}) });
      x = endOut;
    }
    return out;
  }

  /** One range request for a run of adjacent spans, inflated into them as it arrives. */
  private async fly(flight: Flight, store: BlobStore, desc: { digest: string; size: number }, layer: LayerRecord, spans: Span[], targets: LearnTarget[]): Promise<void> {
    const first = spans[0]!.planned;
    const last = spans[spans.length - 1]!.planned;
    let body: Readable | undefined;
    try {
      let from = first.checkpoint;
      if (first.after) {
        // A continuation: its checkpoint is the end of the segment before, once that is inflated.
        const before = first.after;
        while (!before.done && before.error === undefined) await before.changed(flight.ctrl.signal);
        const c = continuation(before);
        if (!c) throw new ClipError('ENETWORK', 'the fetch this one continues did not finish', { object: layer.digest, cause: before.error });
        from = c;
      }
      const opening = store.openBlobRange(desc, first.start, last.end, { signal: flight.ctrl.signal });
      [body, from] = await withWindow(opening, first.after ? from : this.startOf(first, store, flight.ctrl.signal));
      let k = 0;
      let pos = first.out;
      const inflated = targets.length
        ? this.learner(from, body, targets, (c) => this.learn(layer, c), layer.digest)
        : inflateFrom(from, body, { compression: layer.compression, name: layer.digest, expectedBytes: last.endOut - from.out });
      // These bytes are kept: views of a decoder's buffers it never writes again (no copy of every
      // inflated byte: bench/index/RESULTS.md, session 13), else copies; a small part of a buffer
      // is copied too, so as not to keep the rest of it alive.
      const stable = this.yieldsStable(layer, targets.length > 0);
      for await (const piece of inflated) {
        for (let off = 0; off < piece.length && k < spans.length; ) {
          const s = spans[k]!;
          const n = Math.min(piece.length - off, s.endOut - pos);
          const view = stable && n * 4 >= piece.buffer.byteLength;
          if (n > 0) s.push(view ? piece.subarray(off, off + n) : Buffer.from(piece.subarray(off, off + n)), view);
          off += n;
          pos += n;
          if (pos >= s.endOut) {
            s.finish();
            this.keep(s);
            if (++k === spans.length) flight.settled = true;
          }
        }
        if (k >= spans.length) break;
      }
      if (k < spans.length) throw new ClipError('ENETWORK', `compressed range ended at uncompressed byte ${pos} of ${last.endOut}`, { object: layer.digest });
    } catch (err) {
      // Learned checkpoints it started or stopped at may be why it broke (a wrong `in` ends the
      // range early, a wrong window or offset gives bad deflate data): planned without next time.
      if (!flight.ctrl.signal.aborted) this.dropLearned(layer, first.out, last.endOut);
      this.failFlight(flight, err, spans);
    } finally {
      flight.settled = true;
      body?.destroy();
    }
  }

  private failFlight(flight: Flight, err: unknown, spans?: Span[]): void {
    for (const s of spans ?? flight.spans) {
      if (s.done || s.error !== undefined) continue;
      s.fail(err);
      const byStart = this.spans.get(s.layerKey);
      if (byStart?.get(s.out) === s) byStart.delete(s.out);
    }
  }

  /**
   * Keep a finished span, dropping the least recently used ones beyond keepBytes, and beyond the
   * process's budget (processKeep, over every source: the node's server holds one source per
   * mount, and their kept spans must not add up to a burst per mount).
   */
  private keep(s: Span): void {
    if (s.tainted) return;
    s.usedAt = Date.now();
    this.lru.add(s);
    this.lruBytes += s.retained;
    keptInProcess += s.retained;
    keptAll.set(s, this);
    for (const old of this.lru) {
      if (this.lruBytes <= this.keepBytes) break;
      this.drop(old);
    }
    // Over the process's budget: the oldest kept anywhere go; the newest stays (a read is about to take it).
    for (const [old, owner] of keptAll) {
      if (keptInProcess <= processKeep.bytes || old === s) break;
      owner.drop(old);
    }
    this.expiry ??= setTimeout(() => this.expire(), this.keepMs).unref();
  }

  /** Drop the spans unused for keepMs; look again while some are kept. */
  private expire(): void {
    this.expiry = undefined;
    const before = Date.now() - this.keepMs;
    for (const s of this.lru) {
      if (s.usedAt > before) break; // the rest were used later
      this.drop(s);
    }
    if (this.lru.size) this.expiry = setTimeout(() => this.expire(), this.keepMs).unref();
  }

  private drop(s: Span): void {
    if (this.lru.delete(s)) {
      this.lruBytes -= s.retained;
      keptInProcess -= s.retained;
      keptAll.delete(s);
      this.stats.evicted++;
    }
    const byStart = this.spans.get(s.layerKey);
    if (byStart?.get(s.out) === s) byStart.delete(s.out);
    if (byStart?.size === 0) this.spans.delete(s.layerKey);
  }
}

interface PlannedSpan {
  out: number;
  endOut: number;
  checkpoint: Checkpoint;
  /** The checkpoint's window is still to be fetched (CompressedRange.loadWindow). */
  loadWindow?: CompressedRange['loadWindow'];
  /** Compressed [start, end) that inflates it from its checkpoint. */
  start: number;
  end: number;
  /** The block boundary it ends at, when cut short of its checkpoint span's end. */
  cut?: BlockBound;
  /** It continues this segment (cut short, still in flight): inflated from its end, once known. */
  after?: Span;
}

/** A segment neither failed nor invalidated. */
function usable(s: Span | undefined): Span | undefined {
  return s && s.error === undefined && !s.tainted ? s : undefined;
}

/**
 * End a planned span at the first block boundary at or after `end` instead of at its checkpoint
 * span's end, when the layer knows its boundaries. At least 32 KiB past the span's start, so that
 * the span's own bytes are the window to continue it from.
 */
function cutSpan(layer: ResumableLayer, p: PlannedSpan, end: number): PlannedSpan {
  const b = layer.boundAtOrAfter?.(Math.max(end, p.out + WINDOW_BYTES));
  if (!b || b.out >= p.endOut || b.in >= p.end) return p;
  return { ...p, endOut: b.out, end: b.in, cut: b };
}

/** The same for a compressed range read without merging. */
function cutAtBound(layer: ResumableLayer, r: CompressedRange, start: number, end: number): CompressedRange {
  const b = layer.boundAtOrAfter?.(Math.max(end, start + 1));
  const endOut = r.endOut ?? Infinity;
  if (!b || b.out >= endOut || b.in >= r.end || b.out <= r.checkpoint.out) return r;
  return { ...r, end: b.in, endOut: b.out };
}

/** Where inflating may go on after a finished segment cut at a block boundary: its last 32 KiB are the window. */
function continuation(s: Span): Checkpoint | undefined {
  const b = s.planned.cut;
  if (!b || !s.done || s.tainted || s.error !== undefined) return undefined;
  const want = Math.min(WINDOW_BYTES, s.endOut);
  if (s.size < want) return undefined;
  const window = Buffer.allocUnsafe(want);
  let at = want;
  for (let k = s.pieces.length - 1; k >= 0 && at > 0; k--) {
    const p = s.pieces[k]!;
    const n = Math.min(at, p.length);
    p.copy(window, at - n, p.length - n);
    at -= n;
  }
  return { out: b.out, in: b.in, bits: b.bits, window };
}

/**
 * A range's body and the checkpoint to inflate it from, its window fetched while the range's
 * request is under way (no round trip more on the way); a window that fails closes the body.
 */
async function withWindow(opening: Promise<Readable>, start: Checkpoint | Promise<Checkpoint>): Promise<[Readable, Checkpoint]> {
  opening.catch(() => undefined); // awaited below: a failure while the window loads is handled there
  let from: Checkpoint;
  try {
    from = await start;
  } catch (err) {
    void opening.then((b) => b.destroy(), () => undefined);
    throw err;
  }
  return [await opening, from];
}

/** A range request over a run of spans, running while some read waits on it. */
class Flight {
  readonly ctrl = new AbortController();
  readonly spans: Span[] = [];
  readers = 0;
  settled = false;
}

/** The inflated bytes of one checkpoint span [out, endOut), filled as its flight inflates it. */
class Span {
  readonly out: number;
  readonly endOut: number;
  readonly pieces: Buffer[] = [];
  /**
   * Memory its pieces hold: their bytes, or for views the whole buffers they are views of (counted
   * once per span; spans sharing a buffer count it each, so kept spans hold at most what is counted).
   */
  retained = 0;
  private lastBuffer: ArrayBufferLike | undefined;
  done = false;
  /** Invalidated while in flight: not kept. */
  tainted = false;
  /** When a read last took it (ms since the epoch), once kept. */
  usedAt = 0;
  error: unknown = undefined;
  private waiters: (() => void)[] = [];
  constructor(
    readonly layerKey: string,
    readonly planned: PlannedSpan,
    readonly flight: Flight,
  ) {
    this.out = planned.out;
    this.endOut = planned.endOut;
    flight.spans.push(this);
  }
  get size(): number {
    return this.endOut - this.out;
  }
  /** The block boundary it was cut at, if it ends short of its checkpoint span. */
  get cut(): BlockBound | undefined {
    return this.planned.cut;
  }
  /** Add inflated bytes: a copy of its own, or a `view` of a larger buffer that it keeps alive. */
  push(b: Buffer, view = false): void {
    this.pieces.push(b);
    if (!view) this.retained += b.length;
    else if (b.buffer !== this.lastBuffer) {
      this.lastBuffer = b.buffer;
      this.retained += b.buffer.byteLength;
    }
    this.wake();
  }
  finish(): void {
    this.done = true;
    this.wake();
  }
  fail(err: unknown): void {
    this.error = err ?? new ClipError('ENETWORK', 'range fetch failed');
    this.wake();
  }
  /** Resolves at the next change (bytes, end, failure); rejects when `signal` aborts first. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** [start, end) from spans covering it in order, each piece as its flight inflates it. */
async function* readSpans(spans: Span[], start: number, end: number, signal: AbortSignal, release: () => void): AsyncGenerator<Buffer> {
  // Spans may overlap (a kept segment of an earlier plan, then a span from a checkpoint learned
  // inside it): each byte is given once, from where the last span stopped.
  let next = start;
  try {
    for (const s of spans) {
      let pos = s.out;
      if (pos > next) throw new ClipError('EIO', `planned spans leave a gap at ${next}`, { object: s.layerKey });
      for (let k = 0; ; ) {
        for (; k < s.pieces.length; k++) {
          const p = s.pieces[k]!;
          const from = Math.max(next, pos);
          const to = Math.min(end, pos + p.length);
          if (to > from) {
            yield p.subarray(from - pos, to - pos);
            next = to;
          }
          pos += p.length;
          if (pos >= end) return;
        }
        signal.throwIfAborted(); // a read given up ends with its own reason, not its flight's
        if (s.error !== undefined) throw s.error;
        if (s.done) break;
        await s.changed(signal);
      }
    }
  } finally {
    release();
  }
}

const DECODABLE = new Set<string>(['gzip', 'zstd', 'none']);
const NATIVE_LEARNING = process.env.CLIP_LEARN_PAKO !== '1' && isNativeLearningAvailable();

/**
 * `stream`, then `body` destroyed however the reading ends: a decoder that fails (or stops) before
 * it has read its input to the end leaves the response open otherwise, and the client's close()
 * waits for it forever.
 */
async function* closing(stream: AsyncIterable<Buffer>, body: Readable, onError?: () => void): AsyncGenerator<Buffer> {
  try {
    yield* stream;
  } catch (err) {
    onError?.();
    throw err;
  } finally {
    body.destroy();
  }
}

/** Each piece of `stream` copied (a body or decoder that may write its buffer again). */
async function* copied(stream: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const piece of stream) yield Buffer.from(piece);
}

/** The part [start, end) of a stream that begins at uncompressed offset `at`; one that ends before `end` fails. */
async function* cut(stream: AsyncIterable<Buffer>, at: number, start: number, end: number, name: string): AsyncGenerator<Buffer> {
  let pos = at;
  for await (const piece of stream) {
    const from = Math.max(start, pos);
    const to = Math.min(end, pos + piece.length);
    if (to > from) yield piece.subarray(from - pos, to - pos);
    pos += piece.length;
    if (pos >= end) return;
  }
  throw new ClipError('ENETWORK', `compressed range ended at uncompressed byte ${pos} of ${end}`, { object: name });
}

/** A ResumableLayer straight from a layer scan (no index file needed), e.g. for one-off reads. */
export function layerFromScan(scan: LayerScan): ResumableLayer {
  const record = layerRecord(scan);
  const access = { compression: scan.compression, compressedSize: scan.compressedSize, uncompressedSize: scan.uncompressedSize, checkpoints: scan.checkpoints, name: scan.digest };
  const bounds = scan.bounds?.length ? decodeBounds(scan.bounds, scan.uncompressedSize, scan.compressedSize, scan.digest) : undefined;
  return {
    ...record,
    chunkDigest: record.chunkDigest,
    boundAtOrAfter: bounds ? (out) => boundAtOrAfter(bounds, out) : undefined,
    compressedRange: (start, end) => {
      const range = compressedRangeFor(access, start, end - start);
      const stop = range.end < scan.compressedSize ? scan.checkpoints.find((c) => c.out >= end && c.in === range.end) : undefined;
      return { ...range, endOut: stop ? stop.out : range.end < scan.compressedSize ? end : scan.uncompressedSize };
    },
  };
}
