import { ATTR_OUT_SIZE, DIRENT_HEADER_SIZE, ENTRY_OUT_SIZE, STATFS_OUT_SIZE } from './protocol.js';
import type { DirEntry, DirEntryPlus, FuseAttr, FuseEntry, StatFs } from './types.js';

/** Encoders for the reply structs. Each writes at `off` into a buffer the caller sized. */

const TWO_32 = 2 ** 32;

/**
 * A 32-bit field, little-endian, as four byte stores (the value's low 32 bits; a negative one in
 * two's complement). Not Buffer#writeUInt32LE: its range and offset checks cost 3-6x the stores,
 * and a READDIRPLUS reply writes some 30 fields per entry. Callers size their buffers.
 */
function u32(buf: Buffer, value: number, off: number): void {
  buf[off] = value;
  buf[off + 1] = value >>> 8;
  buf[off + 2] = value >>> 16;
  buf[off + 3] = value >>> 24;
}

/**
 * A 64-bit integer as two 32-bit halves: no BigInt (one built per field was a tenth of a reader
 * thread's time on a LOOKUP). Exact for |value| < 2^53; negative values in two's complement.
 */
function i64(buf: Buffer, value: number, off: number): void {
  const v = Math.trunc(value);
  const high = Math.floor(v / TWO_32);
  u32(buf, v - high * TWO_32, off);
  u32(buf, high, off + 4);
}

/** Unsigned: a negative value is written as 0 (below 2^53 the high half fits either way). */
function u64(buf: Buffer, value: number, off: number): void {
  i64(buf, Math.max(0, value), off);
}

/** A timeout in seconds as the (u64 seconds, u32 nanoseconds) pair the protocol wants. */
export function splitSeconds(seconds: number): [number, number] {
  if (!(seconds > 0)) return [0, 0];
  const sec = Math.floor(seconds);
  return [sec, Math.min(999_999_999, Math.round((seconds - sec) * 1e9))];
}

export function writeAttr(buf: Buffer, a: FuseAttr, off: number): void {
  u64(buf, a.ino, off);
  u64(buf, a.size, off + 8);
  u64(buf, a.blocks, off + 16);
  // Times are signed seconds in the kernel's struct (u64 on the wire, two's complement).
  i64(buf, a.atime.sec, off + 24);
  i64(buf, a.mtime.sec, off + 32);
  i64(buf, a.ctime.sec, off + 40);
  u32(buf, a.atime.nsec >>> 0, off + 48);
  u32(buf, a.mtime.nsec >>> 0, off + 52);
  u32(buf, a.ctime.nsec >>> 0, off + 56);
  u32(buf, a.mode >>> 0, off + 60);
  u32(buf, a.nlink >>> 0, off + 64);
  u32(buf, a.uid >>> 0, off + 68);
  u32(buf, a.gid >>> 0, off + 72);
  u32(buf, a.rdev >>> 0, off + 76);
  u32(buf, (a.blksize ?? 0) >>> 0, off + 80);
  u32(buf, 0, off + 84); // flags (FUSE_ATTR_SUBMOUNT, ...): none
}

export interface Timeouts {
  entry: number;
  attr: number;
}

/** fuse_attr_out: attr_valid, attr_valid_nsec, dummy, attr. */
export function writeAttrOut(buf: Buffer, attr: FuseAttr, attrTimeout: number, off: number): void {
  const [sec, nsec] = splitSeconds(attrTimeout);
  u64(buf, sec, off);
  u32(buf, nsec, off + 8);
  u32(buf, 0, off + 12);
  writeAttr(buf, attr, off + 16);
}

/** fuse_entry_out: nodeid, generation, entry_valid, attr_valid, their nsecs, attr. */
export function writeEntryOut(buf: Buffer, entry: FuseEntry, defaults: Timeouts, off: number): void {
  const [esec, ensec] = splitSeconds(entry.entryTimeout ?? defaults.entry);
  const [asec, ansec] = splitSeconds(entry.attrTimeout ?? defaults.attr);
  u64(buf, entry.ino, off);
  u64(buf, entry.generation ?? 0, off + 8);
  u64(buf, esec, off + 16);
  u64(buf, asec, off + 24);
  u32(buf, ensec, off + 32);
  u32(buf, ansec, off + 36);
  writeAttr(buf, entry.attr, off + 40);
}

/** A negative entry: nodeid 0 tells the kernel to remember "no such name" for `timeout` seconds. */
export function negativeEntryOut(timeout: number): Buffer {
  const buf = Buffer.alloc(ENTRY_OUT_SIZE);
  const [sec, nsec] = splitSeconds(timeout);
  u64(buf, sec, 16);
  u32(buf, nsec, 32);
  return buf;
}

export function attrOut(attr: FuseAttr, attrTimeout: number): Buffer {
  const buf = Buffer.allocUnsafe(ATTR_OUT_SIZE);
  writeAttrOut(buf, attr, attrTimeout, 0);
  return buf;
}

export function entryOut(entry: FuseEntry, defaults: Timeouts): Buffer {
  const buf = Buffer.allocUnsafe(ENTRY_OUT_SIZE);
  writeEntryOut(buf, entry, defaults, 0);
  return buf;
}

export function statfsOut(s: StatFs): Buffer {
  const buf = Buffer.alloc(STATFS_OUT_SIZE);
  u64(buf, s.blocks, 0);
  u64(buf, s.bfree, 8);
  u64(buf, s.bavail, 16);
  u64(buf, s.files, 24);
  u64(buf, s.ffree, 32);
  u32(buf, s.bsize >>> 0, 40);
  u32(buf, s.namelen >>> 0, 44);
  u32(buf, s.frsize >>> 0, 48);
  return buf;
}

const align8 = (n: number): number => (n + 7) & ~7;

function nameBytes(name: string | Buffer): Buffer {
  return typeof name === 'string' ? Buffer.from(name) : name;
}

/** DT_* of a mode: the type bits shifted down, as the kernel's dirent type expects. */
export function direntType(mode: number): number {
  return (mode >>> 12) & 0o17;
}

/** One fuse_dirent (ino, off, namelen, type, name) at `at`; the padding stays zero. */
function writeDirent(out: Buffer, e: DirEntry, name: Buffer, at: number): void {
  u64(out, e.ino, at);
  u64(out, e.next, at + 8);
  u32(out, name.length, at + 16);
  u32(out, direntType(e.mode), at + 20);
  name.copy(out, at + DIRENT_HEADER_SIZE);
}

/**
 * Pack fuse_dirent records (ino, off, namelen, type, name, padded to 8 bytes) until `size` would be
 * exceeded. Returns the packed bytes; entries that did not fit are asked for again with a later cookie.
 */
export function packDirents(entries: readonly DirEntry[], size: number): Buffer {
  const names = entries.map((e) => nameBytes(e.name));
  const out = Buffer.alloc(Math.min(size, names.reduce((n, name) => n + align8(DIRENT_HEADER_SIZE + name.length), 0)));
  let pos = 0;
  for (let i = 0; i < entries.length; i++) {
    const name = names[i]!;
    const rec = align8(DIRENT_HEADER_SIZE + name.length);
    if (pos + rec > out.length) break;
    writeDirent(out, entries[i]!, name, pos);
    pos += rec;
  }
  return out.subarray(0, pos);
}

/**
 * Pack fuse_direntplus records (entry_out then dirent). Entries without attributes get nodeid 0,
 * which the kernel takes as "no attributes offered", not as a lookup.
 * Only the entries that fit count as lookups in the kernel; the others come again in a later request.
 */
export function packDirentsPlus(entries: readonly DirEntryPlus[], size: number, defaults: Timeouts): Buffer {
  const names = entries.map((e) => nameBytes(e.name));
  const out = Buffer.alloc(Math.min(size, names.reduce((n, name) => n + ENTRY_OUT_SIZE + align8(DIRENT_HEADER_SIZE + name.length), 0)));
  let pos = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const name = names[i]!;
    const rec = ENTRY_OUT_SIZE + align8(DIRENT_HEADER_SIZE + name.length);
    if (pos + rec > out.length) break;
    if (e.entry) writeEntryOut(out, e.entry, defaults, pos);
    writeDirent(out, e, name, pos + ENTRY_OUT_SIZE);
    pos += rec;
  }
  return out.subarray(0, pos);
}
