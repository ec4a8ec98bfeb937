/**
 * Sources for uncompressed layers, whose stored bytes are the uncompressed stream itself: a tar file
 * on disk, or an uncompressed blob in a BlobStore (read by byte range).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { BlobStore } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import type { LayerRecord, LayerSource } from './types.js';

/** Layers as uncompressed tar files on disk, found by diff_id. */
export class FileLayerSource implements LayerSource {
  private readonly files: Map<string, string>;

  constructor(files: Map<string, string> | Record<string, string>) {
    this.files = files instanceof Map ? files : new Map(Object.entries(files));
  }

  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const file = this.files.get(layer.diffId);
    if (!file) throw new ClipError('ENOTFOUND', 'no file for this layer', { object: layer.diffId });
    const st = await stat(file);
    if (st.size !== layer.uncompressedSize) {
      throw new ClipError('ECORRUPT', `file ${file} has ${st.size} bytes, the layer ${layer.uncompressedSize}`, { object: layer.diffId });
    }
    if (end <= start) return Readable.from([]);
    return createReadStream(file, { start, end: end - 1, signal, highWaterMark: 256 * 1024 });
  }
}

/** Uncompressed layers (compression "none") straight from a BlobStore by range. */
export class UncompressedBlobSource implements LayerSource {
  constructor(private readonly store: BlobStore) {}

  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    if (layer.compression !== 'none') {
      throw new ClipError('EUNSUPPORTED', `${layer.compression} layers need a decompressing source`, { object: layer.digest });
    }
    return this.store.openBlobRange({ digest: layer.digest, size: layer.compressedSize }, start, end, { signal });
  }
}
