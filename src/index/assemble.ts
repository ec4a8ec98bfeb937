/** An index file put together from its sections: header, section table, 8-aligned sections, sha256 trailer. */
import { createHash } from 'node:crypto';
import * as F from './format.js';

export function assemble(sections: Array<[F.SectionId, Buffer]>): Buffer {
  const tableEnd = F.HEADER_SIZE + sections.length * F.SECTION_ENTRY_SIZE;
  let off = alignTo8(tableEnd);
  const placed = sections.map(([id, bytes]) => {
    const at = off;
    off = alignTo8(off + bytes.length);
    return { id, bytes, at };
  });
  const total = off + F.CHECKSUM_SIZE;
  const out = Buffer.alloc(total);
  F.MAGIC.copy(out, 0);
  out.writeUInt32LE(F.FORMAT_VERSION, 8);
  out.writeUInt32LE(sections.length, 12);
  out.writeDoubleLE(total, 16);
  placed.forEach(({ id, bytes, at }, i) => {
    const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
    out.writeUInt32LE(id, e);
    out.writeDoubleLE(at, e + 8);
    out.writeDoubleLE(bytes.length, e + 16);
    bytes.copy(out, at);
  });
  createHash('sha256').update(out.subarray(0, total - F.CHECKSUM_SIZE)).digest().copy(out, total - F.CHECKSUM_SIZE);
  return out;
}

function alignTo8(n: number): number {
  return (n + 7) & ~7;
}
