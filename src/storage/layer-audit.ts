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

/** ok with `inconclusive`: the check could not be made (the source's bytes were not the layer). */
export type AuditResult = { ok: true; inconclusive?: string } | { ok: false; reason: string };

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
  return auditBytes(storage.stream(layer, 0, layer.uncompressedSize, signal ? { signal } : {}), index, n, layer, false);
}

/**
 * The same check on the layer streamed whole from its source (the registry), not through the
 * index's chunk table: asked when chunks from the source keep failing their digests, which leaves
 * the layer forever incomplete on disk. When the real layer (it hashes to its diff_id) has chunks
 * whose digests differ from the index's, the index lies.
 */
export async function auditLayerFromSource(storage: Storage, index: ImageIndex, n: number, layer: LayerRecord, signal?: AbortSignal): Promise<AuditResult> {
  return auditBytes(await storage.sourceStream(layer, signal ?? new AbortController().signal), index, n, layer, true);
}

async function auditBytes(stream: AsyncIterable<Uint8Array>, index: ImageIndex, n: number, layer: LayerRecord, checkChunks: boolean): Promise<AuditResult> {
  const want = filesInLayer(index, n);
  let k = 0;
  let bad: string | undefined;
  const walker = new TarWalker({ name: layer.diffId });
  const hash = createHash('sha256');
  const chunks = checkChunks ? new ChunkDigests(layer) : undefined;
  try {
    for await (const piece of stream) {
      const bytes = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.length);
      hash.update(bytes);
      chunks?.push(bytes);
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
  if (digest !== layer.diffId) {
    // From the source, the bytes are the registry's: a layer that is not what its config says is
    // the registry's fault (or the network's), not evidence against the index.
    if (checkChunks) return { ok: true, inconclusive: `the layer from the source hashes to ${digest}, not its diff_id` };
    return { ok: false, reason: `the layer the index produces hashes to ${digest}, not its diff_id` };
  }
  const chunkBad = chunks?.finish();
  if (chunkBad) return { ok: false, reason: chunkBad };
  if (bad) return { ok: false, reason: bad };
  if (k < want.offsets.length) return { ok: false, reason: `the index places a file at offset ${want.offsets[k]}, past the layer's last file` };
  return { ok: true };
}

/** sha256 of each chunkSize slice of a stream, compared with the index's chunk digests. */
class ChunkDigests {
  private hash = createHash('sha256');
  private filled = 0;
  private i = 0;
  private firstBad: number | undefined;

  constructor(private readonly layer: LayerRecord) {}

  push(bytes: Buffer): void {
    for (let off = 0; off < bytes.length; ) {
      const n = Math.min(bytes.length - off, this.layer.chunkSize - this.filled);
      this.hash.update(bytes.subarray(off, off + n));
      this.filled += n;
      off += n;
      if (this.filled === this.layer.chunkSize) this.close();
    }
  }

  private close(): void {
    if (this.firstBad === undefined && !this.hash.digest().equals(this.layer.chunkDigest(this.i))) this.firstBad = this.i;
    this.hash = createHash('sha256');
    this.filled = 0;
    this.i++;
  }

  /** Why the chunk table is wrong, or undefined. */
  finish(): string | undefined {
    if (this.filled > 0) this.close();
    if (this.firstBad !== undefined) return `chunk ${this.firstBad} of the real layer does not have the sha256 the index gives it`;
    return undefined;
  }
}

/**
 * Audit layer `n` (complete on disk); when the index lies about it, condemn the index everywhere it
 * could be found again (this cache, the shared cache), count it and say so loudly. Reads go on:
 * every chunk served is still checked against the index's digests.
 */
export async function auditOrCondemn(
  storage: Storage, index: ImageIndex, n: number, layer: LayerRecord,
  opts: { cacheDir: string; logger: Logger; signal?: AbortSignal; fromSource?: boolean },
): Promise<AuditResult> {
  const result = opts.fromSource ? await auditLayerFromSource(storage, index, n, layer, opts.signal) : await auditLayer(storage, index, n, layer, opts.signal);
  if (result.ok) {
    if (result.inconclusive) opts.logger.warn({ layer: layer.diffId, why: result.inconclusive }, 'index audit: inconclusive');
    else opts.logger.info({ layer: layer.diffId, fromSource: opts.fromSource === true }, 'index audit: the index matches the layer');
    return result;
  }
  storage.metrics.indexAuditFailures.inc();
  opts.logger.error({ layer: layer.diffId, index: index.file, manifest: index.image.manifestDigest, reason: result.reason }, 'INDEX AUDIT FAILED: the index does not describe this layer; it is condemned and will not be used again');
  await condemnIndex(opts.cacheDir, index.image.manifestDigest, index.buffer, result.reason, storage.remote);
  return result;
}
