/** Decoding of ustar header fields and PAX extended header records. */

export const BLOCK = 512;

/** A NUL-terminated string field; names keep their bytes ('latin1', see tar-path.ts), other text is UTF-8. */
export function stringField(block: Uint8Array, start: number, length: number, encoding: 'utf8' | 'latin1' = 'utf8'): string {
  const field = block.subarray(start, start + length);
  const nul = field.indexOf(0);
  return Buffer.from(field.buffer, field.byteOffset, nul < 0 ? length : nul).toString(encoding);
}

/**
 * A numeric field: octal text (space or NUL terminated), or GNU base-256 when the top bit of the
 * first byte is set (two's complement, so 0xff starts a negative number). Returns NaN if malformed.
 */
export function numericField(block: Uint8Array, start: number, length: number): number {
  const first = block[start]!;
  if (first & 0x80) {
    // As Go's archive/tar: invert when negative, drop the marker bit, read big-endian.
    const inv = first & 0x40 ? 0xff : 0;
    let x = 0n;
    for (let i = 0; i < length; i++) {
      let c = block[start + i]! ^ inv;
      if (i === 0) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    const v = inv ? -x - 1n : x;
    return v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER) ? NaN : Number(v);
  }
  let v = 0;
  let i = start;
  const end = start + length;
  while (i < end && block[i] === 0x20) i++;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return NaN;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    if (block[i] !== 0 && block[i] !== 0x20) return NaN;
  }
  return digits || v === 0 ? v : NaN;
}

/** True when the header checksum matches (tar accepts the unsigned and the historic signed sum). */
export function checksumOk(block: Uint8Array): boolean {
  const stored = numericField(block, 148, 8);
  if (Number.isNaN(stored)) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * PAX records "<len> <key>=<value>\n"; values are bytes (xattrs may be binary). Returns null if
 * the data is malformed. An empty value is kept: it means "drop this keyword" to the caller.
 */
export function parsePaxRecords(data: Buffer): Map<string, Buffer> | null {
  const out = new Map<string, Buffer>();
  let p = 0;
  while (p < data.length) {
    if (data[p] === 0) break; // some writers pad with NULs
    const space = data.indexOf(0x20, p);
    if (space < 0) return null;
    const lenText = data.toString('latin1', p, space);
    if (!/^\d+$/.test(lenText)) return null;
    const len = Number(lenText);
    const end = p + len;
    if (len <= space - p + 1 || end > data.length || data[end - 1] !== 0x0a) return null;
    const eq = data.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= end) return null;
    const key = data.toString('utf8', space + 1, eq);
    out.set(key, data.subarray(eq + 1, end - 1));
    p = end;
  }
  return out;
}

/** PAX time "sec[.frac]", possibly negative, to seconds and nanoseconds (nsec always >= 0). */
export function parsePaxTime(text: string): { sec: number; nsec: number } | null {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text);
  if (!m) return null;
  let sec = Number(m[2]);
  let nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (m[1] === '-') {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return { sec, nsec };
}
