import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ClipError } from '../util/errors.js';
import type { Checkpoint, LayerCompression, LayerScan, TarEntry } from './types.js';
import { ChunkDigester } from './chunk-digests.js';
import { CheckpointPlanner } from './checkpoint-planner.js';
import { GzipInflater } from './gzip-inflater.js';
import { TarWalker } from './tar-walker.js';
import type { UnsafePathPolicy } from './tar-path.js';
import { ZstdDecoder } from './zstd-decoder.js';

export interface ScanOptions {
  compression: LayerCompression;
  /** Output between periodic gzip checkpoints (default 2 MiB). */
  span?: number;
  /** Files larger than this get a checkpoint just before their data (default 512 KiB). */
  bigFileThreshold?: number;
  /** Size of the pieces of the uncompressed layer that get a sha256 each (default 256 KiB). */
  chunkSize?: number;
  /** Names the layer (its digest) in errors. */
  name?: string;
  unsafePaths?: UnsafePathPolicy;
  /** Called after each input chunk with the compressed bytes consumed so far. */
  onProgress?: (compressedBytes: number) => void;
  /**
   * The blob's expected digest and size. Given them, a stream that turns out to be other bytes is
   * an EDIGEST error, whatever went wrong on the way (a flipped byte in transit often breaks the
   * tar or the inflate first), and more bytes than expected fail at once.
   */
  expect?: { digest: string; size: number; diffId?: string };
  /** Keep checkpoint windows deflated (Checkpoint.packed): what an indexer wants. */
  packWindows?: boolean;
  /** Most uncompressed bytes the layer may inflate to (default DEFAULT_MAX_INFLATED). */
  maxInflated?: number;
  /** Most tar entries the layer may hold (default DEFAULT_MAX_ENTRIES). */
  maxEntries?: number;
}

/** Limits no real layer reaches, so that a bomb fails instead of costing hours and gigabytes. */
export const DEFAULT_MAX_INFLATED = 64 * 2 ** 30;
export const DEFAULT_MAX_ENTRIES = 4_000_000;

const BLOB_MISMATCH = 'downloaded blob has';
const DIFF_ID_MISMATCH = 'uncompressed layer has digest';

/**
 * Whether an error says the downloaded bytes were not the blob's (damage in transit, a wrong
 * answer): worth a new download. A wrong diff_id of a blob that matched its digest is not.
 */
export function isBlobMismatch(err: unknown): boolean {
  return err instanceof ClipError && err.code === 'EDIGEST' && !err.message.includes(DIFF_ID_MISMATCH);
}

/**
 * 256 KiB: a read inflates at most this much before its data. Since index format 4 a checkpoint's
 * window is fetched only when a read starts there, so a denser span costs the mount nothing up
 * front: on debian-python's unprofiled python start 512 KiB spans fetched 7.96 MB (11.7 % of the
 * image), 256 KiB 6.76 MB (9.9 %) with 64 KiB chunks; 192 KiB would put the index (eager part and
 * every window) over 1 % of the image (1.07 %; 256 KiB: 0.85 %; bench/index/RESULTS.md, session 10).
 */
export const DEFAULT_SPAN = 256 * 1024;
export const DEFAULT_BIG_FILE = 512 * 1024;
/**
 * 64 KiB: a read fetches and verifies whole chunks, and since fetches end a deflate block past
 * their last chunk (index format 3) the chunk is what bounds them. On debian-python's python start
 * at 256 KiB spans: 6.76 MB unprofiled with 64 KiB chunks, 6.56 with 32 KiB, 7.01 (estimated) with
 * 128 KiB; 32 bytes of digest a chunk (64 KiB: 0.05 % of the image). 32 KiB would halve every
 * per-chunk cost (verification calls, cache bookkeeping, shared-cache keys) again for 0.3 points
 * (bench/index/RESULTS.md, sessions 8-10).
 */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;

/**
 * One layer scan as a push state machine, so that the same code runs in the caller's thread
 * (scanLayer) and in a worker fed with transferred chunks (scanLayerInWorker).
 */
export class LayerScanner {
  private readonly opts: ScanOptions;
  private readonly blobHash = createHash('sha256');
  private readonly tarHash = createHash('sha256');
  private readonly chunks: ChunkDigester;
  private readonly walker: TarWalker;
  private entries: TarEntry[] = [];
  private entryTotal = 0;
  private readonly maxInflated: number;
  private readonly maxEntries: number;
  private readonly decoder: { write(c: Uint8Array, onData: (o: Uint8Array) => void): void; finish(): void } | null;
  private readonly planner: CheckpointPlanner | null = null;
  private readonly frameStarts: Checkpoint[] = [];
  private compressed = 0;
  private uncompressed = 0;
  /** The first error of the decoder or tar walker; the blob is still hashed to tell damage in transit from a bad blob. */
  private failure: unknown = null;
  private overLimit = false;
  private readonly bigFile: number;
  private readonly onData = (out: Uint8Array): void => this.consume(out);

  constructor(opts: ScanOptions) {
    this.opts = opts;
    this.bigFile = opts.bigFileThreshold ?? DEFAULT_BIG_FILE;
    this.maxInflated = opts.maxInflated ?? DEFAULT_MAX_INFLATED;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.chunks = new ChunkDigester(opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
    this.walker = new TarWalker({ name: opts.name, unsafePaths: opts.unsafePaths });
    switch (opts.compression) {
      case 'gzip': {
        const planner = new CheckpointPlanner(opts.span ?? DEFAULT_SPAN, opts.packWindows ?? false);
        this.planner = planner;
        this.decoder = new GzipInflater({ name: opts.name, reuseOutput: true, onBoundary: (b, strm) => planner.onBoundary(b, strm) });
        break;
      }
      case 'zstd':
        this.decoder = new ZstdDecoder({
          name: opts.name,
          onFrameStart: (inOffset, out) => this.frameStarts.push({ out, in: inOffset, bits: 0, window: Buffer.alloc(0) }),
        });
        break;
      case 'none':
        this.decoder = null;
        break;
      default:
        throw new ClipError('EUNSUPPORTED', `unknown layer compression "${String(opts.compression)}"`, { object: opts.name });
    }
  }

  get compressedBytes(): number {
    return this.compressed;
  }

  /** Entries found so far and not yet taken. */
  get pendingEntries(): number {
    return this.entries.length;
  }

  /** Hand over the entries found so far (a worker streams them out rather than holding the layer's list). */
  takeEntries(): TarEntry[] {
    const taken = this.entries;
    this.entries = [];
    return taken;
  }

  write(chunk: Uint8Array): void {
    this.blobHash.update(chunk);
    this.compressed += chunk.length;
    const expected = this.opts.expect;
    if (expected && this.compressed > expected.size) {
      throw new ClipError('EDIGEST', `${BLOB_MISMATCH} more than the ${expected.size} bytes its descriptor says`, { object: expected.digest });
    }
    if (this.failure !== null) return;
    try {
      this.planner?.input(chunk, this.compressed - chunk.length);
      if (this.decoder) this.decoder.write(chunk, this.onData);
      else this.consume(chunk);
    } catch (err) {
      // A limit fails at once: going on to hash the rest of a bomb's blob costs its whole download.
      if (!expected || this.overLimit) throw err;
      this.failure = err;
    }
  }

  finish(): LayerScan {
    const digest = `sha256:${this.blobHash.digest('hex')}`;
    const expected = this.opts.expect;
    if (expected && (digest !== expected.digest || this.compressed !== expected.size)) {
      throw new ClipError('EDIGEST', `${BLOB_MISMATCH} ${digest} (${this.compressed} bytes), its descriptor says ${expected.digest} (${expected.size} bytes)`, { object: expected.digest });
    }
    if (this.failure !== null) throw this.failure;
    this.decoder?.finish();
    this.planner?.finish();
    this.walker.end();
    const diffId = `sha256:${this.tarHash.digest('hex')}`;
    if (expected?.diffId !== undefined && diffId !== expected.diffId) {
      throw new ClipError('EDIGEST', `${DIFF_ID_MISMATCH} ${diffId}, the config's diff_id is ${expected.diffId}`, { object: expected.digest });
    }
    const checkpoints = this.planner?.checkpoints ?? this.frameStarts;
    if (this.opts.compression === 'none' || checkpoints.length === 0) checkpoints.unshift({ out: 0, in: 0, bits: 0, window: Buffer.alloc(0) });
    return {
      compression: this.opts.compression,
      compressedSize: this.compressed,
      uncompressedSize: this.uncompressed,
      digest,
      diffId,
      entries: this.entries,
      checkpoints,
      chunkSize: this.opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      chunkDigests: this.chunks.finish(),
      bounds: this.planner?.bounds.finish() ?? Buffer.alloc(0),
    };
  }

  private consume(out: Uint8Array): void {
    this.uncompressed += out.length;
    if (this.uncompressed > this.maxInflated) {
      this.overLimit = true;
      throw new ClipError('EUNSUPPORTED', `layer inflates to more than ${this.maxInflated} bytes, the limit per layer (--max-inflated)`, { object: this.opts.name });
    }
    this.tarHash.update(out);
    this.chunks.update(out);
    const found = this.walker.push(out);
    this.entryTotal += found.length;
    if (this.entryTotal > this.maxEntries) {
      this.overLimit = true;
      throw new ClipError('EUNSUPPORTED', `layer holds more than ${this.maxEntries} entries, the limit per layer (--max-entries)`, { object: this.opts.name });
    }
    for (const e of found) {
      this.entries.push(e);
      if (e.type === 'file' && e.size > this.bigFile) this.planner?.before(e.dataOffset);
    }
    this.planner?.output(this.uncompressed);
  }
}

/**
 * Read a layer once: digests of the blob and of the tar, per-chunk digests, tar entries with
 * offsets and the checkpoints random access needs. Streams; never holds the layer.
 */
export async function scanLayer(input: Readable | AsyncIterable<Uint8Array>, opts: ScanOptions): Promise<LayerScan> {
  const scanner = new LayerScanner(opts);
  for await (const chunk of input as AsyncIterable<Uint8Array>) {
    scanner.write(chunk);
    opts.onProgress?.(scanner.compressedBytes);
  }
  return scanner.finish();
}
