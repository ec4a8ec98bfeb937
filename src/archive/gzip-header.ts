import { ClipError } from '../util/errors.js';

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/**
 * Length of the gzip member header at the start of `buf` (RFC 1952), or -1 when `buf` ends before
 * the header does. Throws ECORRUPT for anything that is not a deflate gzip header.
 */
export function gzipHeaderLength(buf: Uint8Array, object: string | undefined, at: number): number {
  if (buf.length < 10) {
    if ((buf.length >= 1 && buf[0] !== 0x1f) || (buf.length >= 2 && buf[1] !== 0x8b)) throw notGzip(object, at);
    return -1;
  }
  if (buf[0] !== 0x1f || buf[1] !== 0x8b) throw notGzip(object, at);
  if (buf[2] !== 8) throw new ClipError('ECORRUPT', `gzip member at byte ${at} uses compression method ${buf[2]}, not deflate`, { object });
  const flags = buf[3]!;
  if (flags & 0xe0) throw new ClipError('ECORRUPT', `gzip member at byte ${at} has reserved flag bits set`, { object });
  let p = 10;
  if (flags & FEXTRA) {
    if (buf.length < p + 2) return -1;
    p += 2 + (buf[p]! | (buf[p + 1]! << 8));
    if (buf.length < p) return -1;
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (flags & flag) {
      const nul = buf.indexOf(0, p);
      if (nul < 0) return -1;
      p = nul + 1;
    }
  }
  if (flags & FHCRC) p += 2;
  return buf.length < p ? -1 : p;
}

function notGzip(object: string | undefined, at: number): ClipError {
  return new ClipError('ECORRUPT', `not gzip data at byte ${at} (bad magic)`, { object });
}
