import { isUtf8 } from 'node:buffer';
import { ClipError } from '../util/errors.js';

/**
 * What to do with an entry whose path climbs out of the root with "..":
 * - 'neutralise' (default): resolve ".." lexically and clamp at the root, as `umoci unpack` and
 *   containerd do ("../../etc/passwd" becomes "etc/passwd"), so the index shows what they unpack;
 * - 'reject': fail the layer with EUNSAFE.
 * Either way nothing is ever resolved outside the root.
 */
export type UnsafePathPolicy = 'neutralise' | 'reject';

/*
 * Paths (and link targets) from tar headers are byte strings, one char per byte (latin1): a name
 * that is not valid UTF-8 then reaches the index, and the mount, with its bytes unchanged.
 */

/** The bytes of a byte-string path. */
export function pathBytes(path: string): Buffer {
  return Buffer.from(path, 'latin1');
}

/** A byte-string path as people read it, for messages and listings (see shownBytes). */
export function shownPath(path: string): string {
  return shownBytes(pathBytes(path));
}

/**
 * Bytes as UTF-8 text, with each byte that is not part of a valid sequence written as \xNN (as
 * Python's backslashreplace), so that distinct names never print alike.
 */
export function shownBytes(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i]!;
    const n = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (n > 0 && i + n <= bytes.length && isUtf8(bytes.subarray(i, i + n))) {
      out += bytes.toString('utf8', i, i + n);
      i += n;
    } else {
      out += `\\x${lead.toString(16).padStart(2, '0')}`;
      i++;
    }
  }
  return out;
}

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
        if (policy === 'reject') throw new ClipError('EUNSAFE', `tar path "${shownPath(raw)}" escapes the root`, { object });
        continue;
      }
      parts.pop();
      continue;
    }
    parts.push(part);
  }
  return parts.join('/');
}
