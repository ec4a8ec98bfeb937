import { ClipError } from '../util/errors.js';

/**
 * What to do with an entry whose path climbs out of the root with "..":
 * - 'neutralise' (default): resolve ".." lexically and clamp at the root, as `umoci unpack` and
 *   containerd do ("../../etc/passwd" becomes "etc/passwd"), so the index shows what they unpack;
 * - 'reject': fail the layer with EUNSAFE.
 * Either way nothing is ever resolved outside the root.
 */
export type UnsafePathPolicy = 'neutralise' | 'reject';

/**
 * Normalise a tar path: drop leading "/" and "./", empty and "." parts, trailing "/", and resolve
 * "..". Returns "" for the root itself.
 */
export function normaliseTarPath(raw: string, policy: UnsafePathPolicy, object?: string): string {
  const parts: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) {
        if (policy === 'reject') throw new ClipError('EUNSAFE', `tar path "${raw}" escapes the root`, { object });
        continue;
      }
      parts.pop();
      continue;
    }
    parts.push(part);
  }
  return parts.join('/');
}
