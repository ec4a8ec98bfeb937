/**
 * Checks of a loaded index, one pass over the records without allocation per entry. The checksum
 * catches damage; these catch an index that is well-formed bytes but inconsistent or crafted (a
 * writer bug, a hand-edited file, a hostile index with a valid trailer), so that no query can loop,
 * read out of bounds, or hand a caller a value it cannot use (NaN sizes, a 10 TB layer, chunk size 0).
 *
 * The tree's shape: directories are the one record of their inode (no alias of another directory,
 * so no cycle through a name), every record but the root lies in its parent's children range,
 * parents come before children, and the ranges add up to exactly the records: every record is
 * reachable from the root exactly once.
 */
import { ClipError } from '../util/errors.js';
import * as F from './format.js';
import * as L from './limits.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, type IndexedLayer } from './types.js';

export interface IndexParts {
  /** The file's format version: from 2, each window names its codec. */
  version: number;
  entries: DataView;
  inodes: DataView;
  strings: Buffer;
  xattrs: Buffer;
  layerTable: Buffer;
  checkpoints: Buffer;
  /** Bytes the checkpoints' windows lie in: the Windows section, or from version 4 the windows blob. */
  windowsLength: number;
  chunks: Buffer;
  /** The layer list of the metadata section, not yet trusted. */
  layers: ReadonlyArray<Partial<IndexedLayer>>;
}

type Bad = (why: string) => ClipError;

const KNOWN_TYPES = new Set([S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO]);
const SHA256 = /^sha256:[0-9a-f]{64}$/;
const SLASH = 0x2f;
const DOT = 0x2e;

function isCount(n: unknown, max: number): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= max;
}

export function validateIndex(p: IndexParts, file: string): void {
  const bad: Bad = (why) => new ClipError('ECORRUPT', `index file is inconsistent: ${why}`, { object: file });
  validateLayers(p, bad);
  validateEntries(p, bad);
}

/** Layer metadata, the layer table, checkpoints and chunk digests. */
function validateLayers(p: IndexParts, bad: Bad): void {
  const cpTotal = p.checkpoints.length / F.CHECKPOINT_RECORD_SIZE;
  const chunkTotal = p.chunks.length / F.DIGEST_SIZE;
  if (!Number.isInteger(cpTotal) || !Number.isInteger(chunkTotal)) throw bad('partial checkpoint or chunk record');
  if (p.layers.length >= F.NO_LAYER) throw bad(`${p.layers.length} layers`);
  p.layers.forEach((layer, l) => {
    const { digest, diffId, compression, compressedSize, uncompressedSize } = layer;
    if (typeof digest !== 'string' || !SHA256.test(digest)) throw bad(`layer ${l} digest is not a sha256 digest`);
    if (typeof diffId !== 'string' || !SHA256.test(diffId)) throw bad(`layer ${l} diff_id is not a sha256 digest`);
    if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'none') throw bad(`layer ${l} compression "${String(compression)}" is unknown`);
    if (!isCount(compressedSize, L.MAX_LAYER_BYTES)) throw bad(`layer ${l} compressed size ${String(compressedSize)} is out of range`);
    if (!isCount(uncompressedSize, L.MAX_LAYER_BYTES)) throw bad(`layer ${l} uncompressed size ${String(uncompressedSize)} is out of range`);
    if (uncompressedSize > compressedSize * L.MAX_RATIO[compression] + (compression === 'none' ? 0 : L.RATIO_SLACK)) {
      throw bad(`layer ${l} claims ${uncompressedSize} bytes uncompressed from ${compressedSize} ${compression} bytes`);
    }
    const lt = l * F.LAYER_RECORD_SIZE;
    const chunkSize = p.layerTable.readUInt32LE(lt + F.L_CHUNK_SIZE);
    if (chunkSize < L.MIN_CHUNK_SIZE || chunkSize > L.MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
      throw bad(`layer ${l} chunk size ${chunkSize} is not a power of two between ${L.MIN_CHUNK_SIZE} and ${L.MAX_CHUNK_SIZE}`);
    }
    const chunkCount = p.layerTable.readUInt32LE(lt + F.L_CHUNK_COUNT);
    if (chunkCount !== Math.ceil(uncompressedSize / chunkSize)) throw bad(`layer ${l} has ${chunkCount} chunk digests for ${uncompressedSize} bytes`);
    if (p.layerTable.readUInt32LE(lt + F.L_CHUNK_FIRST) + chunkCount > chunkTotal) throw bad(`layer ${l} chunks out of bounds`);
    const cpFirst = p.layerTable.readUInt32LE(lt + F.L_CP_FIRST);
    const cpCount = p.layerTable.readUInt32LE(lt + F.L_CP_COUNT);
    if (cpCount === 0 || cpFirst + cpCount > cpTotal) throw bad(`layer ${l} checkpoints out of bounds`);
    let prev = -1;
    for (let i = cpFirst; i < cpFirst + cpCount; i++) {
      const at = i * F.CHECKPOINT_RECORD_SIZE;
      const out = p.checkpoints.readDoubleLE(at + F.C_OUT);
      if (!Number.isSafeInteger(out) || out < prev || out > uncompressedSize || (prev < 0 && out !== 0)) throw bad(`layer ${l} checkpoints not ascending from 0 within the layer`);
      prev = out;
      const inOff = p.checkpoints.readDoubleLE(at + F.C_IN);
      if (!isCount(inOff, compressedSize)) throw bad(`layer ${l} checkpoint ${i - cpFirst} input offset ${inOff} out of range`);
      if (p.checkpoints.readUInt8(at + F.C_BITS) > 7 || p.checkpoints.readUInt16LE(at + F.C_WIN_RAW) > L.MAX_WINDOW) throw bad(`layer ${l} checkpoint ${i - cpFirst} has a bad window`);
      if (p.version >= 2 && p.checkpoints.readUInt8(at + F.C_WIN_CODEC) > F.WindowCodec.Brotli) throw bad(`layer ${l} checkpoint ${i - cpFirst} has a window of unknown codec ${p.checkpoints.readUInt8(at + F.C_WIN_CODEC)}`);
      const winOff = p.checkpoints.readDoubleLE(at + F.C_WIN_OFF);
      if (!isCount(winOff, p.windowsLength) || winOff + p.checkpoints.readUInt32LE(at + F.C_WIN_LEN) > p.windowsLength) {
        throw bad(`layer ${l} checkpoint window out of bounds`);
      }
    }
  });
}

/** Inode table, every record's fields, and the tree's shape. */
function validateEntries(p: IndexParts, bad: Bad): void {
  const e = p.entries;
  const s = p.strings;
  const count = e.byteLength / F.ENTRY_RECORD_SIZE;
  const inodeCount = p.inodes.byteLength / 4 - 1;
  const recordOfIno = (ino: number): number => (ino >= 1 && ino <= inodeCount ? p.inodes.getUint32(ino * 4, true) : -1);

  for (let ino = 1; ino <= inodeCount; ino++) {
    const r = p.inodes.getUint32(ino * 4, true);
    if (r >= count || e.getUint32(r * F.ENTRY_RECORD_SIZE + F.E_INO, true) !== ino) throw bad(`inode ${ino} points to a record of another inode`);
  }
  const xattrSets = xattrSetStarts(p.xattrs, bad);
  let children = 0;
  for (let r = 0; r < count; r++) {
    const at = r * F.ENTRY_RECORD_SIZE;
    const ino = e.getUint32(at + F.E_INO, true);
    const mode = e.getUint32(at + F.E_MODE, true);
    const type = mode & S_IFMT;
    const own = recordOfIno(ino);
    if (own < 0) throw bad(`record ${r} has inode ${ino} out of range`);
    if (!KNOWN_TYPES.has(type) || (mode & ~(S_IFMT | 0o7777)) !== 0) throw bad(`record ${r} has a bad mode ${mode.toString(8)}`);
    // A second name of an inode (a hardlink) is never a directory and has the inode's mode: so no
    // name can lead back to a directory above it.
    if (own !== r && (type === S_IFDIR || e.getUint32(own * F.ENTRY_RECORD_SIZE + F.E_MODE, true) !== mode)) {
      throw bad(`record ${r} is a second name of inode ${ino} with another type`);
    }
    const nameOff = e.getUint32(at + F.E_NAME_OFF, true);
    const nameLen = e.getUint16(at + F.E_NAME_LEN, true);
    if (nameOff + nameLen > s.length) throw bad(`record ${r} name out of bounds`);
    const size = e.getFloat64(at + F.E_SIZE, true);
    if (!isCount(size, L.MAX_LAYER_BYTES)) throw bad(`record ${r} has size ${size}`);
    const sec = e.getFloat64(at + F.E_SEC, true);
    if (!Number.isSafeInteger(sec) || Math.abs(sec) > L.MAX_MTIME_SEC || e.getUint32(at + F.E_NSEC, true) >= 1e9) throw bad(`record ${r} has mtime ${sec}`);

    if (r === 0) {
      if (ino !== 1 || type !== S_IFDIR || nameLen !== 0) throw bad('the first record is not the root directory');
    } else {
      checkName(s, nameOff, nameLen, r, bad);
      const parent = recordOfIno(e.getUint32(at + F.E_PARENT, true));
      if (parent < 0 || parent >= r) throw bad(`record ${r} has its parent after it`);
      const pat = parent * F.ENTRY_RECORD_SIZE;
      const first = e.getUint32(pat + F.E_UNION, true);
      if ((e.getUint32(pat + F.E_MODE, true) & S_IFMT) !== S_IFDIR || r < first || r >= first + e.getUint32(pat + F.E_UNION2, true)) {
        throw bad(`record ${r} is not among its parent's children`);
      }
      // Siblings strictly ascending by name bytes: what lookup's binary search needs, and no duplicates.
      if (r > first) {
        const prev = (r - 1) * F.ENTRY_RECORD_SIZE;
        if (!nameAfter(s, e.getUint32(prev + F.E_NAME_OFF, true), e.getUint16(prev + F.E_NAME_LEN, true), nameOff, nameLen)) {
          throw bad(`record ${r} is out of name order in its directory`);
        }
      }
    }
    const u1 = e.getUint32(at + F.E_UNION, true);
    const u2 = e.getUint32(at + F.E_UNION2, true);
    if (type === S_IFDIR) {
      if (u2 > 0 && (u1 <= r || u1 + u2 > count)) throw bad(`directory record ${r} has children out of order or bounds`);
      if (size !== 0) throw bad(`directory record ${r} has size ${size}`);
      children += u2;
    } else if (type === S_IFLNK) {
      if (u1 + u2 > s.length || size !== u2) throw bad(`symlink record ${r} target out of bounds`);
    } else if (type === S_IFREG) {
      const layer = e.getUint16(at + F.E_LAYER, true);
      const offset = e.getFloat64(at + F.E_UNION, true);
      if (layer === F.NO_LAYER ? size !== 0 : layer >= p.layers.length) throw bad(`file record ${r} names layer ${layer}`);
      if (size > 0 && !(isCount(offset, L.MAX_LAYER_BYTES) && offset + size <= p.layers[layer]!.uncompressedSize!)) {
        throw bad(`file record ${r} data [${offset}, +${size}) lies outside its layer`);
      }
    } else if (size !== 0) {
      throw bad(`record ${r} of a special file has size ${size}`);
    }
    const x = e.getUint32(at + F.E_XATTR, true);
    if (x !== 0 && !xattrSets.has(x - 1)) throw bad(`record ${r} xattr reference out of bounds`);
  }
  // Every record but the root is in its parent's range (above) and the ranges hold count - 1
  // records in all: so the ranges do not overlap, and each record is reached exactly once.
  if (children !== count - 1) throw bad(`directories list ${children} children for ${count - 1} records`);
}

/** Whether name b sorts strictly after name a, bytewise (a JS loop: cheaper than a native call for short names). */
function nameAfter(s: Buffer, aOff: number, aLen: number, bOff: number, bLen: number): boolean {
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const d = s[bOff + i]! - s[aOff + i]!;
    if (d !== 0) return d > 0;
  }
  return bLen > aLen;
}

/** A name is one path component: not empty, not "." or "..", no "/" or NUL. */
function checkName(s: Buffer, off: number, len: number, r: number, bad: Bad): void {
  if (len === 0 || (s[off] === DOT && (len === 1 || (len === 2 && s[off + 1] === DOT)))) throw bad(`record ${r} has an empty, "." or ".." name`);
  for (let i = off; i < off + len; i++) {
    const c = s[i];
    if (c === SLASH || c === 0) throw bad(`record ${r} name holds "/" or NUL`);
  }
}

/** Offsets where xattr sets start, checking that each set lies inside the section. */
function xattrSetStarts(x: Buffer, bad: Bad): Set<number> {
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
