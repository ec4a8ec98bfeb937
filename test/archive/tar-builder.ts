/** Hand-built tar blocks for cases tools will not write (binary xattrs, base-256, bad checksums). */

export interface HeaderSpec {
  name: string;
  type?: string;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

function put(block: Buffer, text: string, at: number, len: number): void {
  block.write(text, at, len, 'utf8');
}

function octal(block: Buffer, v: number, at: number, len: number): void {
  put(block, v.toString(8).padStart(len - 1, '0') + '\0', at, len);
}

export function setChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += block[i]!;
  put(block, sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
}

export function header(spec: HeaderSpec): Buffer {
  const b = Buffer.alloc(512);
  put(b, spec.name, 0, 100);
  octal(b, spec.mode ?? 0o644, 100, 8);
  octal(b, spec.uid ?? 0, 108, 8);
  octal(b, spec.gid ?? 0, 116, 8);
  octal(b, spec.size ?? 0, 124, 12);
  octal(b, spec.mtime ?? 0, 136, 12);
  put(b, spec.type ?? '0', 156, 1);
  put(b, spec.linkname ?? '', 157, 100);
  put(b, 'ustar\x0000', 257, 8);
  octal(b, spec.devmajor ?? 0, 329, 8);
  octal(b, spec.devminor ?? 0, 337, 8);
  setChecksum(b);
  return b;
}

export function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

export function file(name: string, data: Buffer | string, extra: Partial<HeaderSpec> = {}): Buffer {
  const body = Buffer.from(data);
  return Buffer.concat([header({ name, size: body.length, ...extra }), padded(body)]);
}

/** A PAX extended header ('x') or global header ('g') with byte values. */
export function pax(records: [string, Buffer | string][], type: 'x' | 'g' = 'x'): Buffer {
  const parts = records.map(([k, v]) => {
    const value = Buffer.from(v);
    const rest = Buffer.concat([Buffer.from(` ${k}=`), value, Buffer.from('\n')]);
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len++;
    return Buffer.concat([Buffer.from(String(len)), rest]);
  });
  const body = Buffer.concat(parts);
  return Buffer.concat([header({ name: 'PaxHeader', type, size: body.length }), padded(body)]);
}

export const END = Buffer.alloc(1024);

/** Tests write paths as text; a TarEntry carries them as byte strings (see src/archive/tar-path.ts). */
export const asBytePath = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');
