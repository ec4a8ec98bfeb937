/**
 * Structural checks of a loaded index, one pass without allocation per entry. The checksum catches
 * damage; these catch an index that is well-formed bytes but inconsistent (a bug in a writer, a
 * hand-edited file), so that queries can never loop or read out of bounds: every child comes after
 * its parent, so walks terminate.
 */
import { ClipError } from '../util/errors.js';
import * as F from './format.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from './types.js';

export interface IndexParts {
  entries: DataView;
  inodes: DataView;
  strings: Buffer;
  xattrs: Buffer;
  layerTable: Buffer;
  checkpoints: Buffer;
  windows: Buffer;
  chunks: Buffer;
  layerCount: number;
}

const KNOWN_TYPES = new Set([S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO]);

export function validateIndex(p: IndexParts, file: string): void {
  const bad = (why: string): ClipError => new ClipError('ECORRUPT', `index file is inconsistent: ${why}`, { object: file });
  const e = p.entries;
  const count = e.byteLength / F.ENTRY_RECORD_SIZE;
  const inodeCount = p.inodes.byteLength / 4 - 1;
  const recordOfIno = (ino: number): number => (ino >= 1 && ino <= inodeCount ? p.inodes.getUint32(ino * 4, true) : -1);

  for (let ino = 1; ino <= inodeCount; ino++) {
    const r = p.inodes.getUint32(ino * 4, true);
    if (r >= count || e.getUint32(r * F.ENTRY_RECORD_SIZE + F.E_INO, true) !== ino) throw bad(`inode ${ino} points to a record of another inode`);
  }
  const xattrSets = xattrSetStarts(p.xattrs, bad);
  for (let r = 0; r < count; r++) {
    const at = r * F.ENTRY_RECORD_SIZE;
    const ino = e.getUint32(at + F.E_INO, true);
    const type = e.getUint32(at + F.E_MODE, true) & S_IFMT;
    if (recordOfIno(ino) < 0) throw bad(`record ${r} has inode ${ino} out of range`);
    if (!KNOWN_TYPES.has(type)) throw bad(`record ${r} has an unknown file type`);
    if (e.getUint32(at + F.E_NAME_OFF, true) + e.getUint16(at + F.E_NAME_LEN, true) > p.strings.length) throw bad(`record ${r} name out of bounds`);
    if (r === 0) {
      if (ino !== 1 || type !== S_IFDIR) throw bad('the first record is not the root directory');
    } else {
      const parent = recordOfIno(e.getUint32(at + F.E_PARENT, true));
      if (parent < 0 || parent >= r) throw bad(`record ${r} has its parent after it`);
      const pat = parent * F.ENTRY_RECORD_SIZE;
      const first = e.getUint32(pat + F.E_UNION, true);
      if ((e.getUint32(pat + F.E_MODE, true) & S_IFMT) !== S_IFDIR || r < first || r >= first + e.getUint32(pat + F.E_UNION2, true)) {
        throw bad(`record ${r} is not among its parent's children`);
      }
    }
    const u1 = e.getUint32(at + F.E_UNION, true);
    const u2 = e.getUint32(at + F.E_UNION2, true);
    if (type === S_IFDIR && u2 > 0 && (u1 <= r || u1 + u2 > count)) throw bad(`directory record ${r} has children out of order or bounds`);
    if (type === S_IFLNK && u1 + u2 > p.strings.length) throw bad(`symlink record ${r} target out of bounds`);
    if (type === S_IFREG && e.getUint16(at + F.E_LAYER, true) >= p.layerCount) throw bad(`file record ${r} names layer ${e.getUint16(at + F.E_LAYER, true)}`);
    const x = e.getUint32(at + F.E_XATTR, true);
    if (x !== 0 && !xattrSets.has(x - 1)) throw bad(`record ${r} xattr reference out of bounds`);
  }

  const cpTotal = p.checkpoints.length / F.CHECKPOINT_RECORD_SIZE;
  const chunkTotal = p.chunks.length / F.DIGEST_SIZE;
  if (!Number.isInteger(cpTotal) || !Number.isInteger(chunkTotal)) throw bad('partial checkpoint or chunk record');
  for (let l = 0; l < p.layerCount; l++) {
    const lt = l * F.LAYER_RECORD_SIZE;
    const cpFirst = p.layerTable.readUInt32LE(lt + F.L_CP_FIRST);
    const cpCount = p.layerTable.readUInt32LE(lt + F.L_CP_COUNT);
    if (cpFirst + cpCount > cpTotal) throw bad(`layer ${l} checkpoints out of bounds`);
    if (p.layerTable.readUInt32LE(lt + F.L_CHUNK_FIRST) + p.layerTable.readUInt32LE(lt + F.L_CHUNK_COUNT) > chunkTotal) throw bad(`layer ${l} chunks out of bounds`);
    let prev = -1;
    for (let i = cpFirst; i < cpFirst + cpCount; i++) {
      const at = i * F.CHECKPOINT_RECORD_SIZE;
      const out = p.checkpoints.readDoubleLE(at + F.C_OUT);
      if (!(out >= prev)) throw bad(`layer ${l} checkpoints not ascending`);
      prev = out;
      if (p.checkpoints.readDoubleLE(at + F.C_WIN_OFF) + p.checkpoints.readUInt32LE(at + F.C_WIN_LEN) > p.windows.length) {
        throw bad(`layer ${l} checkpoint window out of bounds`);
      }
    }
  }
}

/** Offsets where xattr sets start, checking that each set lies inside the section. */
function xattrSetStarts(x: Buffer, bad: (why: string) => ClipError): Set<number> {
  const starts = new Set<number>();
  let p = 0;
  while (p < x.length) {
    starts.add(p);
    if (p + 2 > x.length) throw bad('truncated xattr set');
    const n = x.readUInt16LE(p);
    p += 2;
    for (let i = 0; i < n; i++) {
      if (p + 6 > x.length) throw bad('truncated xattr set');
      p += 6 + x.readUInt16LE(p) + x.readUInt32LE(p + 2);
    }
    if (p > x.length) throw bad('xattr value out of bounds');
  }
  return starts;
}
