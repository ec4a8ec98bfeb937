/** The digest a version 4 index keeps of each packed window (format.ts WINDOW_DIGEST_SIZE). */
import { WINDOW_DIGEST_SIZE } from './format.js';

/** The first WINDOW_DIGEST_SIZE bytes of the sha256 of a packed window. */
export function windowDigest(packed: Buffer): Buffer {
  return process.getBuiltinModule('node:crypto').createHash('sha256').update(packed).digest().subarray(0, WINDOW_DIGEST_SIZE);
}
