/** One layer: entries (or hand-made tar bytes) -> tar -> diff_id hash -> compressor -> blob. */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { ClipError } from '../../util/errors.js';
import type { Compression, Descriptor } from '../types.js';
import { writeBlobStream, Digester } from './blob.js';
import { compressor } from './compress.js';
import type { LayerEntry } from './entries.js';
import { layerMediaType, type MediaTypeFamily } from './media-types.js';
import { tarStream } from './tar.js';

export interface LayerSpec {
  /** The layer's content as entries, written in order ... */
  entries?: Iterable<LayerEntry> | AsyncIterable<LayerEntry>;
  /** ... or a complete tar made elsewhere (GNU tar long names, hostile paths), used byte for byte. */
  tar?: Buffer | { path: string };
  compression?: Compression; // default gzip
  level?: number;
  /** The history entry's created_by. */
  createdBy?: string;
  comment?: string;
  annotations?: Record<string, string>;
}

export interface BuiltLayer {
  descriptor: Descriptor;
  diffId: string;
  compression: Compression;
  uncompressedSize: number;
}

function tarSource(spec: LayerSpec): Readable {
  if (spec.tar && spec.entries) throw new ClipError('EINVAL', 'a layer has entries or tar bytes, not both', { object: spec.createdBy ?? 'layer' });
  if (Buffer.isBuffer(spec.tar)) return Readable.from([spec.tar]);
  if (spec.tar) return createReadStream(spec.tar.path);
  return tarStream(spec.entries ?? []);
}

export async function writeLayer(layoutDir: string, spec: LayerSpec, family: MediaTypeFamily = 'oci'): Promise<BuiltLayer> {
  const compression = spec.compression ?? 'gzip';
  const diff = new Digester();
  const blob = await writeBlobStream(layoutDir, tarSource(spec), diff, compressor(compression, { level: spec.level }));
  return {
    descriptor: {
      mediaType: layerMediaType(family, compression),
      digest: blob.digest,
      size: blob.size,
      ...(spec.annotations ? { annotations: spec.annotations } : {}),
    },
    diffId: diff.digest,
    compression,
    uncompressedSize: diff.size,
  };
}
