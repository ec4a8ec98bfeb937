/**
 * Editing index files as an attacker would: change bytes in place, then re-seal the sha256
 * trailer so that the checksum passes and only the structural checks stand in the way.
 */
import { createHash } from 'node:crypto';
import * as F from '../../src/index/format.js';

/** Byte offset of a section. */
export function section(bytes: Buffer, id: number): number {
  for (let i = 0; i < bytes.readUInt32LE(12); i++) {
    const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
    if (bytes.readUInt32LE(e) === id) return bytes.readDoubleLE(e + 8);
  }
  throw new Error(`no section ${id}`);
}

/** Recompute the trailer after an edit. */
export function reseal(bytes: Buffer): Buffer {
  createHash('sha256').update(bytes.subarray(0, bytes.length - F.CHECKSUM_SIZE)).digest().copy(bytes, bytes.length - F.CHECKSUM_SIZE);
  return bytes;
}

/** Byte offset of entry record r. */
export function rec(bytes: Buffer, r: number): number {
  return section(bytes, F.Section.Entries) + r * F.ENTRY_RECORD_SIZE;
}

/** Record number of the entry with this name (first match in record order). */
export function recordNamed(bytes: Buffer, name: string): number {
  const entries = section(bytes, F.Section.Entries);
  const strings = section(bytes, F.Section.Strings);
  for (let r = 0; ; r++) {
    const at = entries + r * F.ENTRY_RECORD_SIZE;
    if (at >= strings) throw new Error(`no record named ${name}`);
    const off = strings + bytes.readUInt32LE(at + F.E_NAME_OFF);
    if (bytes.toString('latin1', off, off + bytes.readUInt16LE(at + F.E_NAME_LEN)) === name) return r;
  }
}
