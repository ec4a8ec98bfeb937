/**
 * What storage needs to know of a layer, and the slowest tier it reads from. The index produces
 * LayerRecords; the registry (through a checkpoint and inflate) or a local file is a LayerSource.
 */
import type { LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import type { LayerCompression } from '../archive/types.js';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { RedisChunkCache } from './remote-cache.js';

export interface LayerRecord {
  /** sha256 of the uncompressed tar ("sha256:<hex>"): the disk cache's key. */
  readonly diffId: string;
  /** sha256 of the blob as stored. */
  readonly digest: string;
  readonly compression: LayerCompression;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** A power of two: chunk i covers [i * chunkSize, min((i + 1) * chunkSize, uncompressedSize)). */
  readonly chunkSize: number;
  /** The sha256 of chunk i, 32 bytes. */
  chunkDigest(index: number): Buffer;
}

/**
 * The slowest tier: the bytes [start, end) of a layer's uncompressed stream, not yet verified (the
 * caller checks every chunk). `signal` aborts the request.
 */
export interface LayerSource {
  readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /**
   * True when the pieces readUncompressed yields for `layer` are never written again by anyone: the
   * read path then keeps a chunk that lies within one piece as a view of it instead of a copy.
   */
  stablePieces?(layer: LayerRecord): boolean;
  /**
   * The uncompressed range that producing [start, end) yields anyway (a compressed source inflates
   * from one checkpoint to the next), to read whole chunks of it at no extra transfer. It contains
   * [start, end), and reading any range inside it costs the same request. Absent: [start, end).
   */
  span?(layer: LayerRecord, start: number, end: number): { start: number; end: number };
  /**
   * Bytes of [start, end) the source gave failed verification: forget any copy it keeps of them
   * (a source that merges fetches keeps inflated spans), so that a retry fetches them again.
   */
  invalidate?(layer: LayerRecord, start: number, end: number): void;
  /** Checkpoints learned while reading the layer (a compressed source; see learned-checkpoints.ts). */
  learnedCheckpoints?(layer: LayerRecord): LearnedCheckpoint[];
  /** Learn no more checkpoints, and drop the ones captured (handed-over ones stay). */
  stopLearning?(): void;
  /** Keep the windows of the handed-over checkpoints deflated from now on; returns the bytes saved. */
  packLearned?(): Promise<number>;
  /** Plan the layer's reads over these learned checkpoints too; returns how many were new. */
  addLearnedCheckpoints?(layer: LayerRecord, list: readonly LearnedCheckpoint[]): number;
  /**
   * The store's caches, for what the source fetches besides layer bytes (checkpoint windows of an
   * index published without them): Storage hands them over when it is made.
   */
  useCaches?(caches: SourceCaches): void;
}

/** The tiers above a source, as Storage hands them to it. */
export interface SourceCaches {
  /** The disk cache's directory. */
  dir: string;
  remote?: RedisChunkCache | undefined;
  log?: Logger | undefined;
}

const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function chunkCount(layer: Pick<LayerRecord, 'uncompressedSize' | 'chunkSize'>): number {
  return Math.ceil(layer.uncompressedSize / layer.chunkSize);
}

export function chunkLength(layer: Pick<LayerRecord, 'uncompressedSize' | 'chunkSize'>, index: number): number {
  return Math.min(layer.chunkSize, layer.uncompressedSize - index * layer.chunkSize);
}

/** The hex part of "sha256:<hex>", checked, for file names and keys. */
export function digestHex(digest: string, what = 'digest'): string {
  if (!SHA256.test(digest)) throw new ClipError('EINVAL', `not a sha256 ${what}`, { object: digest });
  return digest.slice('sha256:'.length);
}

export interface LayerRecordFields {
  diffId: string;
  digest: string;
  compression: LayerCompression;
  compressedSize: number;
  uncompressedSize: number;
  chunkSize: number;
  /** 32 bytes per chunk, concatenated (LayerScan.chunkDigests). */
  chunkDigests: Buffer;
}

/** A LayerRecord over plain fields (a LayerScan fits), checked for consistency. */
export function layerRecord(fields: LayerRecordFields): LayerRecord {
  digestHex(fields.diffId, 'diff_id');
  const { chunkSize, uncompressedSize, chunkDigests } = fields;
  if (!Number.isSafeInteger(uncompressedSize) || uncompressedSize < 0) {
    throw new ClipError('EINVAL', `bad uncompressed size ${uncompressedSize}`, { object: fields.diffId });
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 512 || chunkSize > 2 ** 30 || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new ClipError('EUNSUPPORTED', `chunk size ${chunkSize} is not a power of two between 512 B and 1 GiB`, { object: fields.diffId });
  }
  const count = chunkCount(fields);
  if (chunkDigests.length !== count * 32) {
    throw new ClipError('ECORRUPT', `expected ${count} chunk digests, got ${chunkDigests.length / 32}`, { object: fields.diffId });
  }
  return {
    diffId: fields.diffId,
    digest: fields.digest,
    compression: fields.compression,
    compressedSize: fields.compressedSize,
    uncompressedSize,
    chunkSize,
    chunkDigest(index: number): Buffer {
      if (!Number.isInteger(index) || index < 0 || index >= count) {
        throw new ClipError('EINVAL', `chunk ${index} out of range (0..${count - 1})`, { object: fields.diffId });
      }
      return chunkDigests.subarray(index * 32, index * 32 + 32);
    },
  };
}
