/**
 * A checkpoint learned while reading (not made by the indexer): where a deflate block begins, found
 * by a node that inflated through that point, to be handed to other nodes (in a startup profile)
 * so they can start inflating exactly there. It is a hint from elsewhere: whoever uses one still
 * verifies every byte it yields (the chunk digests), and drops it when they do not match.
 */
import { promisify } from 'node:util';
import { inflateRaw } from 'node:zlib';
import { ClipError } from '../util/errors.js';
import type { Checkpoint } from './types.js';

/** The same shape as the startup profile's (src/profile/format.ts). */
export interface LearnedCheckpoint {
  /** Offset in the uncompressed layer. */
  out: number;
  /** Bit offset in the compressed blob where the next deflate block begins. */
  inBits: number;
  /** Up to 32 KiB of uncompressed bytes before `out` (empty at the start of a gzip member, or while `packed`). */
  window: Buffer;
  /**
   * The window raw-deflated, as a startup profile carries it: then `window` is empty, and the
   * window is inflated only when a fetch starts there (a profile's 40 windows inflated upfront
   * took 20-30 ms of the main thread before its prefetch began: bench/index/RESULTS.md session 13).
   */
  packed?: Buffer;
}

export const WINDOW_BYTES = 32 * 1024;
/** A packed window's bytes at most: deflate's stored blocks add 5 bytes per 64 KiB, and a little more. */
export const PACKED_WINDOW_MAX = WINDOW_BYTES + 1024;

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
  if (l.packed !== undefined) {
    // Its window is checked when it is inflated (unpackWindow), where a fetch starts from it.
    if (!Buffer.isBuffer(l.packed) || l.packed.length > PACKED_WINDOW_MAX) bad(`packed window is not bytes, or over ${PACKED_WINDOW_MAX}`);
    if (l.window.length) bad('a packed window and an inflated one');
  }
  if (l.window.length > WINDOW_BYTES) bad(`window of ${l.window.length} bytes is over ${WINDOW_BYTES}`);
  if (l.window.length > l.out) bad(`window of ${l.window.length} bytes is longer than the ${l.out} bytes before it`);
}

const inflateRawAsync = promisify(inflateRaw);

/**
 * The window of a checkpoint kept `packed`, inflated on a pool thread (not the event loop's);
 * ECORRUPT naming `name` when it does not inflate or cannot be the window of one at `out`.
 */
export async function unpackWindow(packed: Buffer, out: number, name: string): Promise<Buffer> {
  let window: Buffer;
  try {
    window = await inflateRawAsync(packed, { maxOutputLength: WINDOW_BYTES });
  } catch (err) {
    throw new ClipError('ECORRUPT', `window of the learned checkpoint at out=${out} does not inflate`, { object: name, cause: err });
  }
  if (window.length > out) throw new ClipError('ECORRUPT', `window of the learned checkpoint at out=${out} is ${window.length} bytes, longer than the bytes before it`, { object: name });
  return window;
}
