/**
 * An index file loaded with one read and queried in place: entry records are read from the buffer
 * on demand, never turned into per-entry objects.
 */
import { constants } from 'node:fs';
import { boundAtOrAfter, decodeBounds, NO_BOUNDS, type BlockBound, type BlockBounds } from '../archive/block-bounds.js';
import { shownBytes } from '../archive/tar-path.js';
import { ClipError } from '../util/errors.js';
import * as F from './format.js';
import { formatVersion, readSections } from './sections.js';
import { validateIndex } from './validate.js';
import { windowDigest } from './window-digest.js';
import {
  emptyAttr, entryTypeOf, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
  type Attr, type DataLocation, type EntryType, type IndexCheckpoint, type IndexPlatform, type LayerInfo,
} from './types.js';

export interface IndexImageInfo {
  reference: string;
  location: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: IndexPlatform;
}

/** Called per directory entry by readdir; return false to stop (the reply buffer is full). */
export type ReaddirVisitor = (name: Buffer, ino: number, mode: number, nextOffset: number) => boolean | void;

/**
 * Given for `checked`: the bytes are shared with the thread of this process that checked them
 * whole (a FUSE reader thread's copy, src/fs/index-thread.ts). Nothing is checked again, and the
 * block boundaries are decoded only if asked for.
 */
export const CHECKED_IN_PROCESS = Symbol('checked by this process');

const MAX_SYMLINK_HOPS = 40;
const SLASH = 0x2f;
const DOT = 0x2e;

export class ImageIndex {
  readonly image: IndexImageInfo;
  /** The file's format version (format.ts READABLE_VERSIONS). */
  readonly version: number;
  readonly config: Buffer;
  readonly layers: readonly LayerInfo[];
  /** Directory entries (paths); a hardlink group counts once per name. */
  readonly entryCount: number;
  /** Highest inode number; inode numbers run 1..inodeCount. */
  readonly inodeCount: number;
  readonly rootIno = 1;

  private readonly entries: DataView;
  private readonly inodes: DataView;
  private readonly strings: Buffer;
  private readonly xattrs: Buffer;
  private readonly layerTable: Buffer;
  private readonly checkpoints: Buffer;
  private readonly windows: Buffer;
  private readonly chunks: Buffer;
  /** Version 4: WINDOW_DIGEST_SIZE bytes per checkpoint, the digest of its packed window. */
  private readonly windowDigests: Buffer | undefined;
  /**
   * Version 4: the blob the checkpoints' windows are in (sha256 "sha256:<hex>" and length). The
   * Windows section is that blob whole, or empty when the index was published without it.
   */
  readonly windowsBlob: { digest: string; size: number } | undefined;
  /** Per layer, its deflate block boundaries (none before version 3); see `bounds`. */
  private decodedBounds: readonly BlockBounds[] | undefined;
  private readonly boundsSection: Buffer | undefined;

  /** Read an index file (one read) and check it (see the constructor for `checked`). */
  static async open(file: string, checked?: string): Promise<ImageIndex> {
    let buf: Buffer;
    try {
      // O_NONBLOCK and the type check: a FIFO (or device) named as an index would block or never end.
      // node:fs/promises on first use: a reader thread never opens an index file.
      const fh = await process.getBuiltinModule('node:fs/promises').open(file, constants.O_RDONLY | constants.O_NONBLOCK);
      try {
        const st = await fh.stat();
        if (!st.isFile()) throw new ClipError('EINVAL', 'is not a regular file, so not an index file', { object: file });
        const { size } = st;
        // Exactly the file's size, outside the small-buffer pool: one allocation, normally one read.
        buf = Buffer.allocUnsafeSlow(size);
        let got = 0;
        while (got < size) {
          const { bytesRead } = await fh.read(buf, got, size - got, got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got < size) buf = buf.subarray(0, got);
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (err instanceof ClipError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new ClipError(code === 'ENOENT' ? 'ENOTFOUND' : 'EINVAL', `cannot read index file: ${code ?? String(err)}`, { object: file, cause: err });
    }
    return new ImageIndex(buf, file, checked);
  }

  /**
   * `file` names the index in errors. The frame and checksum are always checked; every field and
   * the tree's shape too, unless `checked` is the checksum (hex) of an index the caller knows was
   * checked whole already (this process's copy of it, or the one `clip mount` checked before
   * handing it to the node's server): equal checksums are equal bytes. CHECKED_IN_PROCESS: not
   * even the checksum (the bytes are another thread's, which checked them).
   */
  constructor(readonly buffer: Buffer, readonly file: string = 'index', checked?: string | typeof CHECKED_IN_PROCESS) {
    const inProcess = checked === CHECKED_IN_PROCESS;
    const sections = readSections(buffer, file, inProcess);
    this.version = formatVersion(buffer);
    const sec = (id: F.SectionId): Buffer => {
      const r = sections.get(id)!;
      return buffer.subarray(r.at, r.at + r.length);
    };
    const corrupt = (why: string): ClipError => new ClipError('ECORRUPT', `index file is corrupt: ${why}`, { object: file });
    let meta: IndexImageInfo & { layers: Omit<LayerInfo, 'chunkSize' | 'chunkCount' | 'checkpointCount'>[] };
    try {
      meta = JSON.parse(sec(F.Section.Meta).toString('utf8'));
    } catch (err) {
      throw new ClipError('ECORRUPT', 'index file is corrupt: metadata is not JSON', { object: file, cause: err });
    }
    const textFields = ['reference', 'location', 'manifestDigest', 'manifestMediaType'] as const;
    if (typeof meta !== 'object' || meta === null || textFields.some((k) => typeof meta[k] !== 'string')
      || typeof meta.platform !== 'object' || meta.platform === null
      || !Array.isArray(meta.layers) || meta.layers.some((l) => typeof l !== 'object' || l === null)) {
      throw corrupt('metadata lacks required fields');
    }
    this.image = {
      reference: meta.reference, location: meta.location, manifestDigest: meta.manifestDigest,
      manifestMediaType: meta.manifestMediaType, platform: meta.platform,
    };
    this.config = sec(F.Section.Config);
    this.layerTable = sec(F.Section.Layers);
    this.checkpoints = sec(F.Section.Checkpoints);
    this.windows = sec(F.Section.Windows);
    this.chunks = sec(F.Section.Chunks);
    this.strings = sec(F.Section.Strings);
    this.xattrs = sec(F.Section.Xattrs);
    if (!Array.isArray(meta.layers) || this.layerTable.length !== meta.layers.length * F.LAYER_RECORD_SIZE) {
      throw corrupt('layer table does not match the layer list');
    }
    this.layers = meta.layers.map((l, i) => {
      const at = i * F.LAYER_RECORD_SIZE;
      return {
        ...l,
        chunkSize: this.layerTable.readUInt32LE(at + F.L_CHUNK_SIZE),
        chunkCount: this.layerTable.readUInt32LE(at + F.L_CHUNK_COUNT),
        checkpointCount: this.layerTable.readUInt32LE(at + F.L_CP_COUNT),
      };
    });
    const entries = sec(F.Section.Entries);
    const inodes = sec(F.Section.Inodes);
    if (entries.length === 0 || entries.length % F.ENTRY_RECORD_SIZE !== 0) throw corrupt('entry table has a partial record');
    if (inodes.length < 8 || inodes.length % 4 !== 0) throw corrupt('inode table has a partial record');
    this.entries = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
    this.inodes = new DataView(inodes.buffer, inodes.byteOffset, inodes.byteLength);
    if (this.version >= 4) {
      const wd = sections.has(F.Section.WindowDigests) ? sec(F.Section.WindowDigests) : undefined;
      const cpTotal = this.checkpoints.length / F.CHECKPOINT_RECORD_SIZE;
      if (!wd || wd.length !== F.WINDOWS_HEAD_SIZE + cpTotal * F.WINDOW_DIGEST_SIZE) throw corrupt('window digests do not match the checkpoints');
      const size = wd.readDoubleLE(F.DIGEST_SIZE);
      if (!Number.isSafeInteger(size) || size < 0) throw corrupt('windows blob length out of range');
      if (this.windows.length !== 0 && this.windows.length !== size) throw corrupt(`windows section of ${this.windows.length} bytes, not the ${size} of its blob`);
      this.windowsBlob = { digest: `sha256:${wd.toString('hex', 0, F.DIGEST_SIZE)}`, size };
      this.windowDigests = wd.subarray(F.WINDOWS_HEAD_SIZE);
    }
    if (!inProcess && checked !== this.checksum) validateIndex({
      version: this.version, entries: this.entries, inodes: this.inodes, strings: this.strings, xattrs: this.xattrs, layerTable: this.layerTable,
      checkpoints: this.checkpoints, windowsLength: this.windowsBlob?.size ?? this.windows.length, chunks: this.chunks, layers: meta.layers,
    }, file);
    this.entryCount = entries.length / F.ENTRY_RECORD_SIZE;
    this.inodeCount = inodes.length / 4 - 1;
    this.boundsSection = this.version >= 3 && sections.has(F.Section.Bounds) ? sec(F.Section.Bounds) : undefined;
    // Decoded (and checked) now, so that a damaged table fails the open; a reader thread never asks.
    if (!inProcess) void this.bounds;
  }

  private get bounds(): readonly BlockBounds[] {
    return (this.decodedBounds ??= readBounds(this.boundsSection, this.layers, this.file));
  }

  /** The file's sha256 trailer, in hex: the digest of every byte before it. */
  get checksum(): string {
    return this.buffer.toString('hex', this.buffer.length - F.CHECKSUM_SIZE);
  }

  // ---- records -------------------------------------------------------------------------------

  /** Record offset of an inode, or -1. */
  private recordOf(ino: number): number {
    if (!(ino >= 1 && ino <= this.inodeCount)) return -1;
    return this.inodes.getUint32(ino * 4, true) * F.ENTRY_RECORD_SIZE;
  }

  private recordOrThrow(ino: number): number {
    const at = this.recordOf(ino);
    if (at < 0) throw new ClipError('ENOTFOUND', `no inode ${ino}`, { object: this.file });
    return at;
  }

  private u32(at: number): number {
    return this.entries.getUint32(at, true);
  }

  private nameAt(at: number): Buffer {
    const off = this.u32(at + F.E_NAME_OFF);
    return this.strings.subarray(off, off + this.entries.getUint16(at + F.E_NAME_LEN, true));
  }

  // ---- FUSE-facing queries -------------------------------------------------------------------

  /** Whether `ino` names an inode of this index. */
  has(ino: number): boolean {
    return this.recordOf(ino) >= 0;
  }

  /** Binary search of a directory's children; returns the child's inode number, or 0 when absent or not a directory. */
  lookup(parentIno: number, name: string | Buffer): number {
    const key = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
    return this.lookupBytes(parentIno, key, 0, key.length);
  }

  /** lookup of the name held in key[start, end): no allocation. */
  lookupBytes(parentIno: number, key: Buffer, start: number, end: number): number {
    const at = this.recordOf(parentIno);
    if (at < 0 || (this.u32(at + F.E_MODE) & S_IFMT) !== S_IFDIR) return 0;
    let lo = this.u32(at + F.E_UNION);
    let hi = lo + this.u32(at + F.E_UNION2) - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const rec = mid * F.ENTRY_RECORD_SIZE;
      const off = this.u32(rec + F.E_NAME_OFF);
      const cmp = this.strings.compare(key, start, end, off, off + this.entries.getUint16(rec + F.E_NAME_LEN, true));
      if (cmp === 0) return this.u32(rec + F.E_INO);
      if (cmp < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  /** Fill `out` with the inode's attributes (pass a reused object on hot paths). */
  getattr(ino: number, out: Attr = emptyAttr()): Attr {
    const at = this.recordOrThrow(ino);
    const e = this.entries;
    const mode = e.getUint32(at + F.E_MODE, true);
    const type = mode & S_IFMT;
    out.ino = ino;
    out.mode = mode;
    out.nlink = e.getUint32(at + F.E_NLINK, true);
    out.uid = e.getUint32(at + F.E_UID, true);
    out.gid = e.getUint32(at + F.E_GID, true);
    out.size = e.getFloat64(at + F.E_SIZE, true);
    out.mtimeSec = e.getFloat64(at + F.E_SEC, true);
    out.mtimeNsec = e.getUint32(at + F.E_NSEC, true);
    const dev = type === S_IFCHR || type === S_IFBLK;
    out.rdevMajor = dev ? e.getUint32(at + F.E_UNION, true) : 0;
    out.rdevMinor = dev ? e.getUint32(at + F.E_UNION2, true) : 0;
    return out;
  }

  /** st_mode of an inode (0 if unknown). */
  mode(ino: number): number {
    const at = this.recordOf(ino);
    return at < 0 ? 0 : this.u32(at + F.E_MODE);
  }

  type(ino: number): EntryType {
    return entryTypeOf(this.u32(this.recordOrThrow(ino) + F.E_MODE));
  }

  /** The directory's parent inode (the root's parent is the root). */
  parent(ino: number): number {
    return this.u32(this.recordOrThrow(ino) + F.E_PARENT);
  }

  /** Number of entries in a directory (without "." and ".."); 0 for non-directories. */
  childCount(ino: number): number {
    const at = this.recordOrThrow(ino);
    return (this.u32(at + F.E_MODE) & S_IFMT) === S_IFDIR ? this.u32(at + F.E_UNION2) : 0;
  }

  /**
   * Visit a directory's entries from `offset` (0 = start; each visit gets the offset that resumes
   * after it, stable for the life of the index). "." and ".." are the caller's. `name` is a view
   * into the index: copy it to keep it.
   */
  readdir(ino: number, offset: number, visit: ReaddirVisitor): void {
    const at = this.recordOrThrow(ino);
    if ((this.u32(at + F.E_MODE) & S_IFMT) !== S_IFDIR) throw new ClipError('EINVAL', `inode ${ino} is not a directory`, { object: this.file });
    const first = this.u32(at + F.E_UNION);
    const count = this.u32(at + F.E_UNION2);
    for (let i = Math.max(0, offset); i < count; i++) {
      const rec = (first + i) * F.ENTRY_RECORD_SIZE;
      if (visit(this.nameAt(rec), this.u32(rec + F.E_INO), this.u32(rec + F.E_MODE), i + 1) === false) return;
    }
  }

  /** A symlink's target bytes (a view into the index). */
  readlink(ino: number): Buffer {
    const at = this.recordOrThrow(ino);
    if ((this.u32(at + F.E_MODE) & S_IFMT) !== S_IFLNK) throw new ClipError('EINVAL', `inode ${ino} is not a symlink`, { object: this.file });
    const off = this.u32(at + F.E_UNION);
    return this.strings.subarray(off, off + this.u32(at + F.E_UNION2));
  }

  private xattrSet(ino: number): number {
    const ref = this.u32(this.recordOrThrow(ino) + F.E_XATTR);
    return ref === 0 ? -1 : ref - 1;
  }

  /** Names of the inode's extended attributes, sorted. */
  listxattr(ino: number): string[] {
    const names: string[] = [];
    this.eachXattr(ino, (name) => {
      names.push(name.toString('utf8'));
      return true;
    });
    return names;
  }

  /** One extended attribute's value (a view into the index), or undefined. */
  getxattr(ino: number, name: string): Buffer | undefined {
    const key = Buffer.from(name, 'utf8');
    let found: Buffer | undefined;
    this.eachXattr(ino, (n, value) => {
      if (!n.equals(key)) return true;
      found = value;
      return false;
    });
    return found;
  }

  private eachXattr(ino: number, visit: (name: Buffer, value: Buffer) => boolean): void {
    let p = this.xattrSet(ino);
    if (p < 0) return;
    const x = this.xattrs;
    const count = x.readUInt16LE(p);
    p += 2;
    for (let i = 0; i < count; i++) {
      const nameLen = x.readUInt16LE(p);
      const valueLen = x.readUInt32LE(p + 2);
      const name = x.subarray(p + 6, p + 6 + nameLen);
      const value = x.subarray(p + 6 + nameLen, p + 6 + nameLen + valueLen);
      p += 6 + nameLen + valueLen;
      if (!visit(name, value)) return;
    }
  }

  // ---- storage-facing queries ----------------------------------------------------------------

  /** Where a regular file's content lives; undefined for anything else. Empty files have size 0. */
  dataLocation(ino: number): DataLocation | undefined {
    const at = this.recordOrThrow(ino);
    if ((this.u32(at + F.E_MODE) & S_IFMT) !== S_IFREG) return undefined;
    const layer = this.entries.getUint16(at + F.E_LAYER, true);
    return { layer, offset: this.entries.getFloat64(at + F.E_UNION, true), size: this.entries.getFloat64(at + F.E_SIZE, true) };
  }

  private layerRecord(layer: number): number {
    if (!(layer >= 0 && layer < this.layers.length)) throw new ClipError('EINVAL', `no layer ${layer}`, { object: this.file });
    return layer * F.LAYER_RECORD_SIZE;
  }

  chunkSize(layer: number): number {
    return this.layerTable.readUInt32LE(this.layerRecord(layer) + F.L_CHUNK_SIZE);
  }

  chunkCount(layer: number): number {
    return this.layerTable.readUInt32LE(this.layerRecord(layer) + F.L_CHUNK_COUNT);
  }

  /** sha256 of chunk `i` of the layer's uncompressed stream (a 32-byte view into the index). */
  chunkDigest(layer: number, i: number): Buffer {
    const lt = this.layerRecord(layer);
    if (!(i >= 0 && i < this.layerTable.readUInt32LE(lt + F.L_CHUNK_COUNT))) {
      throw new ClipError('EINVAL', `no chunk ${i} in layer ${this.layers[layer]!.digest}`, { object: this.file });
    }
    const at = (this.layerTable.readUInt32LE(lt + F.L_CHUNK_FIRST) + i) * F.DIGEST_SIZE;
    return this.chunks.subarray(at, at + F.DIGEST_SIZE);
  }

  checkpointCount(layer: number): number {
    return this.layerTable.readUInt32LE(this.layerRecord(layer) + F.L_CP_COUNT);
  }

  /** Where checkpoint `i` of a layer sits, without its window: enough to bound a fetch. */
  checkpointPosition(layer: number, i: number): { out: number; in: number; bits: number } {
    return this.positionAt(this.checkpointRecord(layer, i));
  }

  /** Bytes checkpoint `i`'s window takes in the index as stored (packed): what fetching it alone would cost. */
  checkpointWindowBytes(layer: number, i: number): number {
    return this.checkpoints.readUInt32LE(this.checkpointRecord(layer, i) + F.C_WIN_LEN);
  }

  /** Bytes of the windows (the Windows section, or the windows blob when it was left out). */
  get windowsBytes(): number {
    return this.windowsBlob?.size ?? this.windows.length;
  }

  /** Whether every window is in this file (always before version 4; an index made here keeps them). */
  get windowsAtHand(): boolean {
    return this.windowsBlob === undefined || this.windows.length === this.windowsBlob.size;
  }

  /** The windows blob, when this file holds it (version 4, windows at hand). */
  get windowsBlobBytes(): Buffer | undefined {
    return this.windowsBlob && this.windowsAtHand ? this.windows : undefined;
  }

  /** Whether checkpoint `i`'s window must be fetched (from the windows blob) before inflating from it. */
  needsWindow(layer: number, i: number): boolean {
    return !this.windowsAtHand && this.checkpoints.readUInt16LE(this.checkpointRecord(layer, i) + F.C_WIN_RAW) > 0;
  }

  /** Where checkpoint `i`'s packed window lies in the windows blob, and the digest it must have (version 4). */
  windowPlace(layer: number, i: number): { offset: number; length: number; digest: Buffer } {
    const at = this.checkpointRecord(layer, i);
    if (!this.windowDigests) throw new ClipError('EINVAL', `index format version ${this.version} has no windows blob`, { object: this.file });
    const n = at / F.CHECKPOINT_RECORD_SIZE;
    return {
      offset: this.checkpoints.readDoubleLE(at + F.C_WIN_OFF),
      length: this.checkpoints.readUInt32LE(at + F.C_WIN_LEN),
      digest: this.windowDigests.subarray(n * F.WINDOW_DIGEST_SIZE, (n + 1) * F.WINDOW_DIGEST_SIZE),
    };
  }

  /** Checkpoint `i` of a layer, its window inflated (ENOTFOUND when the window was left out: see checkpointWith). */
  checkpoint(layer: number, i: number): IndexCheckpoint {
    const at = this.checkpointRecord(layer, i);
    const c = this.checkpoints;
    if (!this.windowsAtHand && c.readUInt16LE(at + F.C_WIN_RAW) > 0) {
      throw new ClipError('ENOTFOUND', `checkpoint ${i} of layer ${this.layers[layer]!.digest}: its window is not in this index (fetched from the windows blob)`, { object: this.file });
    }
    const winOff = c.readDoubleLE(at + F.C_WIN_OFF);
    return this.decodeCheckpoint(layer, i, this.windows.subarray(winOff, winOff + c.readUInt32LE(at + F.C_WIN_LEN)));
  }

  /**
   * Checkpoint `i` of a layer with its packed window fetched apart (windowPlace): checked against
   * its digest, then inflated; ECORRUPT naming the layer and checkpoint when it is not that window.
   */
  checkpointWith(layer: number, i: number, packed: Buffer): IndexCheckpoint {
    return this.decodeCheckpoint(layer, i, packed);
  }

  private decodeCheckpoint(layer: number, i: number, packed: Buffer): IndexCheckpoint {
    const at = this.checkpointRecord(layer, i);
    const c = this.checkpoints;
    const rawLen = c.readUInt16LE(at + F.C_WIN_RAW);
    const codec = this.version >= 2 ? c.readUInt8(at + F.C_WIN_CODEC) : F.WindowCodec.Deflate;
    const where = `checkpoint ${i} window of layer ${this.layers[layer]!.digest}`;
    if (this.windowDigests && rawLen > 0 && !windowDigest(packed).equals(this.windowPlace(layer, i).digest)) {
      throw new ClipError('ECORRUPT', `${where} does not match its digest (${packed.length} bytes)`, { object: this.file });
    }
    let window: Buffer;
    try {
      window = rawLen === 0 ? Buffer.alloc(0)
        : codec === F.WindowCodec.Brotli ? process.getBuiltinModule('node:zlib').brotliDecompressSync(packed, { maxOutputLength: rawLen })
          : process.getBuiltinModule('node:zlib').inflateRawSync(packed, { maxOutputLength: rawLen });
    } catch (err) {
      throw new ClipError('ECORRUPT', `${where} does not decode`, { object: this.file, cause: err });
    }
    if (window.length !== rawLen) throw new ClipError('ECORRUPT', `${where} is ${window.length} bytes, expected ${rawLen}`, { object: this.file });
    return { ...this.positionAt(at), window };
  }

  private positionAt(at: number): { out: number; in: number; bits: number } {
    const c = this.checkpoints;
    return { out: c.readDoubleLE(at + F.C_OUT), in: c.readDoubleLE(at + F.C_IN), bits: c.readUInt8(at + F.C_BITS) };
  }

  /** Byte offset of checkpoint `i`'s record in the checkpoint table. */
  private checkpointRecord(layer: number, i: number): number {
    const lt = this.layerRecord(layer);
    if (!(i >= 0 && i < this.layerTable.readUInt32LE(lt + F.L_CP_COUNT))) {
      throw new ClipError('EINVAL', `no checkpoint ${i} in layer ${this.layers[layer]!.digest}`, { object: this.file });
    }
    return (this.layerTable.readUInt32LE(lt + F.L_CP_FIRST) + i) * F.CHECKPOINT_RECORD_SIZE;
  }

  /**
   * The first deflate block boundary at or after `offset` (a fetch may stop at its `in`), or
   * undefined: none recorded there (an index before version 3, a zstd layer, the layer's end).
   */
  boundAtOrAfter(layer: number, offset: number): BlockBound | undefined {
    this.layerRecord(layer);
    return boundAtOrAfter(this.bounds[layer]!, offset);
  }

  /** How many block boundaries the index records for a layer. */
  boundCount(layer: number): number {
    this.layerRecord(layer);
    return this.bounds[layer]!.out.length;
  }

  /** Index of the last checkpoint at or before `offset` in the uncompressed stream. */
  checkpointIndexBefore(layer: number, offset: number): number {
    const lt = this.layerRecord(layer);
    const first = this.layerTable.readUInt32LE(lt + F.L_CP_FIRST);
    const count = this.layerTable.readUInt32LE(lt + F.L_CP_COUNT);
    if (count === 0) throw new ClipError('ECORRUPT', `layer ${this.layers[layer]!.digest} has no checkpoints`, { object: this.file });
    let lo = 0;
    let hi = count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.checkpoints.readDoubleLE((first + mid) * F.CHECKPOINT_RECORD_SIZE + F.C_OUT) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The nearest checkpoint at or before `offset`, window inflated. */
  checkpointBefore(layer: number, offset: number): IndexCheckpoint {
    return this.checkpoint(layer, this.checkpointIndexBefore(layer, offset));
  }

  // ---- CLI-facing queries --------------------------------------------------------------------

  /**
   * The inode at an absolute or root-relative path, or 0. Symlinks in parent components are
   * followed inside the image's root (".." stops at the root), as in a chroot; the last component
   * is followed only with `followLast`.
   */
  resolvePath(path: string, opts: { followLast?: boolean } = {}): number {
    const hops = { n: 0, path };
    return this.walkBytes(this.rootIno, Buffer.from(path, 'utf8'), opts.followLast ?? false, hops);
  }

  /** Resolve the components of `path` from `start`; symlink targets are walked in place in the string heap. */
  private walkBytes(start: number, path: Buffer, followLast: boolean, hops: { n: number; path: string }): number {
    let end = path.length;
    while (end > 0 && path[end - 1] === SLASH) end--;
    let cur = start;
    let i = 0;
    while (i < end) {
      if (path[i] === SLASH) {
        i++;
        continue;
      }
      let j = i;
      while (j < end && path[j] !== SLASH) j++;
      const len = j - i;
      const isLast = j >= end;
      if (len === 1 && path[i] === DOT) {
        i = j;
        continue;
      }
      if (len === 2 && path[i] === DOT && path[i + 1] === DOT) {
        cur = this.parent(cur);
        i = j;
        continue;
      }
      const next = this.lookupBytes(cur, path, i, j);
      if (next === 0) return 0;
      const type = this.mode(next) & S_IFMT;
      if (type === S_IFLNK && (!isLast || followLast)) {
        if (++hops.n > MAX_SYMLINK_HOPS) throw new ClipError('EINVAL', 'too many levels of symbolic links', { object: hops.path });
        const target = this.readlink(next);
        if (target.length === 0) return 0;
        const resolved = this.walkBytes(target[0] === SLASH ? this.rootIno : cur, target, true, hops);
        if (resolved === 0) return 0;
        cur = resolved;
      } else {
        if (!isLast && type !== S_IFDIR) return 0;
        cur = next;
      }
      i = j;
    }
    return cur;
  }

  /** Like resolvePath, but a missing path is a ClipError naming it. */
  resolvePathOrThrow(path: string, opts: { followLast?: boolean } = {}): number {
    const ino = this.resolvePath(path, opts);
    if (ino === 0) throw new ClipError('ENOTFOUND', 'no such file or directory in the image', { object: path });
    return ino;
  }

  /** One path of an inode, as shown (shownBytes); "/" for the root; a hardlink group answers with its first name. */
  pathOf(ino: number): string {
    const names: string[] = [];
    let at = this.recordOrThrow(ino);
    while (this.u32(at + F.E_INO) !== this.rootIno) {
      names.push(shownBytes(this.nameAt(at)));
      at = this.recordOf(this.u32(at + F.E_PARENT));
    }
    return '/' + names.reverse().join('/');
  }

  /** Depth-first walk in name order from `ino` (the root by default), yielding each entry's path (as shown) and inode. */
  *walk(ino: number = this.rootIno): Generator<{ path: string; ino: number }> {
    const base = ino === this.rootIno ? '' : this.pathOf(ino);
    yield { path: base || '/', ino };
    const stack: Array<{ dir: number; path: string; next: number; count: number; first: number }> = [];
    const push = (dir: number, path: string): void => {
      const at = this.recordOrThrow(dir);
      if ((this.u32(at + F.E_MODE) & S_IFMT) !== S_IFDIR) return;
      stack.push({ dir, path, next: 0, count: this.u32(at + F.E_UNION2), first: this.u32(at + F.E_UNION) });
    };
    push(ino, base);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next >= top.count) {
        stack.pop();
        continue;
      }
      const rec = (top.first + top.next++) * F.ENTRY_RECORD_SIZE;
      const child = this.u32(rec + F.E_INO);
      const path = `${top.path}/${shownBytes(this.nameAt(rec))}`;
      yield { path, ino: child };
      push(child, path);
    }
  }
}

/** The Bounds section split per layer and decoded; ECORRUPT naming `file` if it does not add up. */
function readBounds(section: Buffer | undefined, layers: readonly LayerInfo[], file: string): BlockBounds[] {
  if (!section) return layers.map(() => NO_BOUNDS);
  const corrupt = (): ClipError => new ClipError('ECORRUPT', 'index file is corrupt: block boundary table does not match the layers', { object: file });
  if (section.length < layers.length * 4) throw corrupt();
  let at = layers.length * 4;
  const bounds = layers.map((l, i) => {
    const n = section.readUInt32LE(i * 4);
    if (at + n > section.length) throw corrupt();
    const part = section.subarray(at, (at += n));
    if (n > 0 && l.compression !== 'gzip') throw corrupt();
    return n === 0 ? NO_BOUNDS : decodeBounds(part, l.uncompressedSize, l.compressedSize, file);
  });
  if (at !== section.length) throw corrupt();
  return bounds;
}
