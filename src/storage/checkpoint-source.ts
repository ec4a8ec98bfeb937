/**
 * The registry tier: a layer's uncompressed range [start, end) produced by one ranged read of the
 * compressed blob, from the nearest checkpoint at or before `start` to the first checkpoint at or
 * after `end` (or the blob's end), inflated from the checkpoint. Bytes are not verified here: the
 * read path checks every chunk against its digest.
 */
import type { Readable } from 'node:stream';
import { compressedRangeFor, inflateFrom } from '../archive/random-access.js';
import type { Checkpoint, LayerScan } from '../archive/types.js';
import type { BlobStore } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { layerRecord, type LayerRecord, type LayerSource } from './types.js';

export interface CompressedRange {
  checkpoint: Checkpoint;
  /** Blob bytes [start, end) to fetch: start is where inflation from `checkpoint` begins. */
  start: number;
  end: number;
  /** Where inflating [start, end) reaches in the uncompressed stream: the end checkpoint's out, or the layer's size. */
  endOut?: number;
}

/** A layer that knows where in its compressed blob a range of its uncompressed stream begins. */
export interface ResumableLayer extends LayerRecord {
  compressedRange(start: number, end: number): CompressedRange;
}

export function isResumable(layer: LayerRecord): layer is ResumableLayer {
  return typeof (layer as Partial<ResumableLayer>).compressedRange === 'function';
}

export class CheckpointSource implements LayerSource {
  /** One store, or one per layer (an index names where its layers live). */
  constructor(private readonly stores: BlobStore | ((layer: LayerRecord) => BlobStore)) {}

  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const store = typeof this.stores === 'function' ? this.stores(layer) : this.stores;
    const desc = { digest: layer.digest, size: layer.compressedSize };
    // Refused before any request: a body opened and never read would hold its connection forever.
    if (!DECODABLE.has(layer.compression)) throw new ClipError('EUNSUPPORTED', `unknown layer compression "${String(layer.compression)}"`, { object: layer.digest });
    if (layer.compression === 'none') return store.openBlobRange(desc, start, end, { signal });
    if (!isResumable(layer)) throw new ClipError('EINVAL', 'a compressed layer needs its checkpoints to be read by range', { object: layer.digest });
    const range = layer.compressedRange(start, end);
    const body = await store.openBlobRange(desc, range.start, range.end, { signal });
    return closing(cut(inflateFrom(range.checkpoint, body, { compression: layer.compression, name: layer.digest }), range.checkpoint.out, start, end), body);
  }

  /** From the checkpoint before `start` to the one after `end`: all of it is inflated to serve [start, end). */
  span(layer: LayerRecord, start: number, end: number): { start: number; end: number } {
    if (layer.compression === 'none' || !isResumable(layer)) return { start, end };
    const range = layer.compressedRange(start, end);
    return { start: Math.min(start, range.checkpoint.out), end: Math.max(end, Math.min(range.endOut ?? end, layer.uncompressedSize)) };
  }
}

const DECODABLE = new Set<string>(['gzip', 'zstd', 'none']);

/**
 * `stream`, then `body` destroyed however the reading ends: a decoder that fails (or stops) before
 * it has read its input to the end leaves the response open otherwise, and the client's close()
 * waits for it forever.
 */
async function* closing(stream: AsyncIterable<Buffer>, body: Readable): AsyncGenerator<Buffer> {
  try {
    yield* stream;
  } finally {
    body.destroy();
  }
}

/** The part [start, end) of a stream that begins at uncompressed offset `at`. */
async function* cut(stream: AsyncIterable<Buffer>, at: number, start: number, end: number): AsyncGenerator<Buffer> {
  let pos = at;
  for await (const piece of stream) {
    const from = Math.max(start, pos);
    const to = Math.min(end, pos + piece.length);
    if (to > from) yield piece.subarray(from - pos, to - pos);
    pos += piece.length;
    if (pos >= end) return;
  }
}

/** A ResumableLayer straight from a layer scan (no index file needed), e.g. for one-off reads. */
export function layerFromScan(scan: LayerScan): ResumableLayer {
  const record = layerRecord(scan);
  const access = { compression: scan.compression, compressedSize: scan.compressedSize, uncompressedSize: scan.uncompressedSize, checkpoints: scan.checkpoints, name: scan.digest };
  return {
    ...record,
    chunkDigest: record.chunkDigest,
    compressedRange: (start, end) => {
      const range = compressedRangeFor(access, start, end - start);
      const stop = range.end < scan.compressedSize ? scan.checkpoints.find((c) => c.out >= end && c.in === range.end) : undefined;
      return { ...range, endOut: stop ? stop.out : range.end < scan.compressedSize ? end : scan.uncompressedSize };
    },
  };
}
