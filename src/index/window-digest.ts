/** The digest a version 4 index keeps of each packed window (format.ts WINDOW_DIGEST_SIZE). */
import { createHash } from 'node:crypto';
import { WINDOW_DIGEST_SIZE } from './format.js';

/** The first WINDOW_DIGEST_SIZE bytes of the sha256 of a packed window. */
export function windowDigest(packed: Buffer): Buffer {
  return createHash('sha256').update(packed).digest().subarray(0, WINDOW_DIGEST_SIZE);
}
