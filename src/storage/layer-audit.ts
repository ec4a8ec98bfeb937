/**
 * Does an index tell the truth about a layer? Asked once the layer is complete in the disk cache
 * (background fetch), so it costs one sequential read of the cached layer and no network:
 * - its uncompressed bytes hash to the diff_id the image config names: the checkpoints and chunk
 *   digests the index gave produced the real layer;
 * - every regular file the index places in this layer starts at the data offset of a tar entry of
 *   the same size in the real layer (an index could otherwise point a file at other bytes).
 * A published or shared index is trusted data; this is how a lying one is caught after the fact.
 */
import { createHash } from 'node:crypto';
import { TarWalker } from '../archive/tar-walker.js';
import type { ImageIndex } from '../index/reader.js';
import type { Logger } from '../util/log.js';
import { condemnIndex } from './index-artifact.js';
import type { Storage } from './storage.js';
import type { LayerRecord } from './types.js';

export type AuditResult = { ok: true } | { ok: false; reason: string };

/** Data offsets and sizes of the regular files (non-empty) the index places in layer `n`, by offset. */
function filesInLayer(index: ImageIndex, n: number): { offsets: Float64Array; sizes: Float64Array } {
  const offsets: number[] = [];
  const sizes: number[] = [];
  for (let ino = 1; ino <= index.inodeCount; ino++) {
    const loc = index.dataLocation(ino);
    if (loc && loc.layer === n && loc.size > 0) {
      offsets.push(loc.offset);
      sizes.push(loc.size);
    }
  }
  const order = Array.from(offsets.keys()).sort((a, b) => offsets[a]! - offsets[b]!);
  return { offsets: Float64Array.from(order, (k) => offsets[k]!), sizes: Float64Array.from(order, (k) => sizes[k]!) };
}

export async function auditLayer(storage: Storage, index: ImageIndex, n: number, layer: LayerRecord, signal?: AbortSignal): Promise<AuditResult> {
  const want = filesInLayer(index, n);
  let k = 0;
  let bad: string | undefined;
  const walker = new TarWalker({ name: layer.diffId });
  const hash = createHash('sha256');
  try {
    for await (const piece of storage.stream(layer, 0, layer.uncompressedSize, signal ? { signal } : {})) {
      const bytes = piece as Buffer;
      hash.update(bytes);
      if (bad) continue; // keep hashing: the diff_id verdict is the stronger one
      for (const e of walker.push(bytes)) {
        if (e.type !== 'file' || e.size === 0) continue;
        if (k < want.offsets.length && want.offsets[k]! < e.dataOffset) {
          bad = `the index places a file of ${want.sizes[k]} bytes at offset ${want.offsets[k]}, where the layer has no file`;
          break;
        }
        if (k < want.offsets.length && want.offsets[k] === e.dataOffset) {
          if (want.sizes[k] !== e.size) {
            bad = `the index gives the file at offset ${e.dataOffset} (${e.path}) ${want.sizes[k]} bytes, the layer ${e.size}`;
            break;
          }
          // Several inodes may share data (the same offset): all are accounted for here.
          while (k < want.offsets.length && want.offsets[k] === e.dataOffset) k++;
        }
      }
    }
  } catch (err) {
    return { ok: false, reason: `the layer as the index describes it does not read as a tar: ${(err as Error).message}` };
  }
  const digest = `sha256:${hash.digest('hex')}`;
  if (digest !== layer.diffId) return { ok: false, reason: `the layer the index produces hashes to ${digest}, not its diff_id` };
  if (bad) return { ok: false, reason: bad };
  if (k < want.offsets.length) return { ok: false, reason: `the index places a file at offset ${want.offsets[k]}, past the layer's last file` };
  return { ok: true };
}

/**
 * Audit layer `n` (complete on disk); when the index lies about it, condemn the index everywhere it
 * could be found again (this cache, the shared cache), count it and say so loudly. Reads go on:
 * every chunk served is still checked against the index's digests.
 */
export async function auditOrCondemn(
  storage: Storage, index: ImageIndex, n: number, layer: LayerRecord, opts: { cacheDir: string; logger: Logger; signal?: AbortSignal },
): Promise<AuditResult> {
  const result = await auditLayer(storage, index, n, layer, opts.signal);
  if (result.ok) {
    opts.logger.info({ layer: layer.diffId }, 'index audit: the index matches the layer');
    return result;
  }
  storage.metrics.indexAuditFailures.inc();
  opts.logger.error({ layer: layer.diffId, index: index.file, manifest: index.image.manifestDigest, reason: result.reason }, 'INDEX AUDIT FAILED: the index does not describe this layer; it is condemned and will not be used again');
  await condemnIndex(opts.cacheDir, index.image.manifestDigest, index.buffer, result.reason, storage.remote);
  return result;
}
