/**
 * A checkpoint learned while reading (not made by the indexer): where a deflate block begins, found
 * by a node that inflated through that point, to be handed to other nodes (in a startup profile)
 * so they can start inflating exactly there. It is a hint from elsewhere: whoever uses one still
 * verifies every byte it yields (the chunk digests), and drops it when they do not match.
 */
import { ClipError } from '../util/errors.js';
import type { Checkpoint } from './types.js';

/** The same shape as the startup profile's (src/profile/format.ts). */
export interface LearnedCheckpoint {
  /** Offset in the uncompressed layer. */
  out: number;
  /** Bit offset in the compressed blob where the next deflate block begins. */
  inBits: number;
  /** Up to 32 KiB of uncompressed bytes before `out` (empty at the start of a gzip member). */
  window: Buffer;
}

export const WINDOW_BYTES = 32 * 1024;

/** As a Checkpoint (zran's convention: `bits` of byte in - 1 belong to the next block). */
export function checkpointOf(l: LearnedCheckpoint): Checkpoint {
  const inByte = Math.ceil(l.inBits / 8);
  return { out: l.out, in: inByte, bits: inByte * 8 - l.inBits, window: l.window };
}

export function learnedOf(c: Pick<Checkpoint, 'out' | 'in' | 'bits'>, window: Buffer): LearnedCheckpoint {
  return { out: c.out, inBits: c.in * 8 - c.bits, window };
}

/** Throws EINVAL naming `layer` when `l` cannot be a checkpoint of a layer of these sizes. */
export function checkLearned(l: LearnedCheckpoint, layer: { name: string; compressedSize: number; uncompressedSize: number }): void {
  const bad = (why: string): never => {
    throw new ClipError('EINVAL', `learned checkpoint at out=${String(l?.out)}: ${why}`, { object: layer.name });
  };
  if (!l || typeof l !== 'object') bad('not an object');
  if (!Number.isSafeInteger(l.out) || l.out <= 0 || l.out >= layer.uncompressedSize) bad(`out must be inside the layer (1..${layer.uncompressedSize - 1})`);
  if (!Number.isSafeInteger(l.inBits) || l.inBits <= 0 || l.inBits >= layer.compressedSize * 8) bad(`inBits must be inside the blob (1..${layer.compressedSize * 8 - 1})`);
  if (!Buffer.isBuffer(l.window)) bad('window is not bytes');
  if (l.window.length > WINDOW_BYTES) bad(`window of ${l.window.length} bytes is over ${WINDOW_BYTES}`);
  if (l.window.length > l.out) bad(`window of ${l.window.length} bytes is longer than the ${l.out} bytes before it`);
}
