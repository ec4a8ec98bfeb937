/** The outer layer of an index file: magic, checksum, version, section table. */
import { ClipError } from '../util/errors.js';
import * as F from './format.js';

export interface SectionRange { at: number; length: number }

/**
 * Check the file's frame and return where each section lies. Order matters for the messages:
 * a damaged byte anywhere is reported as damage (checksum) before the version is believed.
 * `sumChecked`: these very bytes had their checksum checked by another thread of this process
 * (a FUSE reader thread's shared copy), so it is not computed again.
 */
export function readSections(buf: Buffer, file: string, sumChecked = false): Map<number, SectionRange> {
  const corrupt = (why: string): ClipError => new ClipError('ECORRUPT', `index file is corrupt: ${why}`, { object: file });
  const magicLen = Math.min(buf.length, F.MAGIC.length);
  if (!buf.subarray(0, magicLen).equals(F.MAGIC.subarray(0, magicLen))) {
    throw new ClipError('ECORRUPT', 'not a clip index file (bad magic)', { object: file });
  }
  if (buf.length < F.HEADER_SIZE + F.CHECKSUM_SIZE) throw corrupt(`truncated to ${buf.length} bytes`);
  const total = buf.readDoubleLE(16);
  const body = buf.subarray(0, buf.length - F.CHECKSUM_SIZE);
  // node:crypto is loaded on first use: a reader thread that never hashes does not load it (~13 ms).
  const sum = sumChecked ? undefined : process.getBuiltinModule('node:crypto').createHash('sha256').update(body).digest();
  if (sum && !sum.equals(buf.subarray(buf.length - F.CHECKSUM_SIZE))) {
    throw corrupt(total !== buf.length ? `${buf.length} bytes where the header says ${total} (truncated or extended)` : 'checksum mismatch');
  }
  // After the checksum, so that a damaged byte is reported as damage, not as a strange version.
  const version = buf.readUInt32LE(8);
  if (!F.READABLE_VERSIONS.includes(version)) {
    throw new ClipError('EUNSUPPORTED', `index format version ${version}, this clip reads versions ${F.READABLE_VERSIONS.join(', ')}: re-create it with "clip index"`, { object: file });
  }
  if (total !== buf.length) throw corrupt(`${buf.length} bytes where the header says ${total}`);

  const count = buf.readUInt32LE(12);
  if (F.HEADER_SIZE + count * F.SECTION_ENTRY_SIZE > body.length) throw corrupt('section table out of bounds');
  const sections = new Map<number, SectionRange>();
  for (let i = 0; i < count; i++) {
    const e = F.HEADER_SIZE + i * F.SECTION_ENTRY_SIZE;
    const at = buf.readDoubleLE(e + 8);
    const length = buf.readDoubleLE(e + 16);
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(length) || at < 0 || length < 0 || at + length > body.length) {
      throw corrupt(`section ${buf.readUInt32LE(e)} out of bounds`);
    }
    sections.set(buf.readUInt32LE(e), { at, length });
  }
  for (const id of F.REQUIRED_SECTIONS) if (!sections.has(id)) throw corrupt(`section ${id} missing`);
  return sections;
}

/** The format version of an index file whose frame readSections accepted. */
export function formatVersion(buf: Buffer): number {
  return buf.readUInt32LE(8);
}
