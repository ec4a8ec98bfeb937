/**
 * The startup profile file: what a mount read during its start, in order, for one image and one
 * index; plus learned checkpoints per layer (where a later node may start inflating). Binary and
 * small: varints, ranges as (layer, offset, length, ms since the first read, inode), windows
 * deflated. A sha256 trailer catches damage and truncation; decoding checks every field and fails
 * with ECORRUPT naming the profile.
 *
 *   "CLIPPROF" version(1) manifestDigest(str) indexDigest(str) layerCount { diffId(str) }
 *   rangeCount { layer offset length atMs ino }
 *   learnedLayerCount { layer count { out inBits windowLen window(deflated) } }
 *   (decoded, windows stay deflated: LearnedCheckpoint.packed)
 *   sha256(everything before)
 */
import { createHash } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { PACKED_WINDOW_MAX, WINDOW_BYTES, type LearnedCheckpoint } from '../archive/learned-checkpoint.js';
import { NO_WINDOW } from '../archive/types.js';
import { ClipError } from '../util/errors.js';

export const PROFILE_MAGIC = Buffer.from('CLIPPROF');
export const PROFILE_VERSION = 1;
/** A profile larger than this is not a profile (a python start is a few kB). */
export const MAX_PROFILE_BYTES = 64 * 1024 * 1024;

/** One range the start read: bytes [offset, offset + length) of the uncompressed layer. */
export interface ProfileRange {
  /** The layer's position in the index (and in `layers`). */
  layer: number;
  offset: number;
  length: number;
  /** First access, in ms after the first read of the profile. */
  atMs: number;
  /** The file's inode in the mount (0 when unknown). */
  ino: number;
}

/** A point where inflating a layer may start, learned by the read path (issue 12 item 2). */
export type { LearnedCheckpoint };

export interface StartupProfile {
  manifestDigest: string;
  /** sha256 of the index file the ranges refer to. */
  indexDigest: string;
  /** The image's layers (diff_ids), in index order. */
  layers: string[];
  ranges: ProfileRange[];
  /** Learned checkpoints by layer position; empty lists may be left out. */
  learned: Map<number, LearnedCheckpoint[]>;
}

class Writer {
  private readonly parts: Buffer[] = [];
  private cur = Buffer.allocUnsafe(4096);
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.parts.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(4096, n));
    this.pos = 0;
  }

  /** Unsigned LEB128 over safe integers (arithmetic, not bit operations: values pass 2^32). */
  uint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new ClipError('EINVAL', `profile value ${v} is not a non-negative integer`);
    this.room(8);
    while (v >= 0x80) {
      this.cur[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.cur[this.pos++] = v;
  }

  bytes(b: Buffer): void {
    this.uint(b.length);
    this.room(b.length);
    b.copy(this.cur, this.pos);
    this.pos += b.length;
  }

  str(s: string): void {
    this.bytes(Buffer.from(s, 'utf8'));
  }

  done(): Buffer {
    this.parts.push(this.cur.subarray(0, this.pos));
    return Buffer.concat(this.parts);
  }
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer, private readonly object: string) {}

  fail(what: string): never {
    throw new ClipError('ECORRUPT', `profile is damaged: ${what} (at byte ${this.pos})`, { object: this.object });
  }

  uint(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length) this.fail('truncated number');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (!Number.isSafeInteger(v)) this.fail('number too large');
      if (b < 0x80) return v;
      scale *= 0x80;
    }
  }

  bytes(max: number): Buffer {
    const n = this.uint();
    if (n > max || this.pos + n > this.buf.length) this.fail(`field of ${n} bytes`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(max = 256): string {
    return this.bytes(max).toString('utf8');
  }

  count(max: number, what: string): number {
    const n = this.uint();
    if (n > max) this.fail(`${n} ${what}`);
    return n;
  }
}

export function encodeProfile(p: StartupProfile): Buffer {
  const w = new Writer();
  w.uint(PROFILE_VERSION);
  w.str(p.manifestDigest);
  w.str(p.indexDigest);
  w.uint(p.layers.length);
  for (const l of p.layers) w.str(l);
  w.uint(p.ranges.length);
  for (const r of p.ranges) {
    if (r.layer >= p.layers.length) throw new ClipError('EINVAL', `profile range names layer ${r.layer} of ${p.layers.length}`);
    w.uint(r.layer);
    w.uint(r.offset);
    w.uint(r.length);
    w.uint(Math.max(0, Math.round(r.atMs)));
    w.uint(r.ino);
  }
  const learned = [...p.learned].filter(([, list]) => list.length > 0);
  w.uint(learned.length);
  for (const [layer, list] of learned) {
    w.uint(layer);
    w.uint(list.length);
    for (const c of list) {
      if (c.window.length > WINDOW_BYTES) throw new ClipError('EINVAL', `learned checkpoint window of ${c.window.length} bytes (at most ${WINDOW_BYTES})`);
      if (c.packed && c.packed.length > PACKED_WINDOW_MAX) throw new ClipError('EINVAL', `learned checkpoint packed window of ${c.packed.length} bytes (at most ${PACKED_WINDOW_MAX})`);
      w.uint(c.out);
      w.uint(c.inBits);
      w.bytes(c.packed ?? deflateRawSync(c.window));
    }
  }
  const body = Buffer.concat([PROFILE_MAGIC, w.done()]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** The profile in `buf`; ECORRUPT naming `object` (a path, a key, an artifact) when it is not one. */
export function decodeProfile(buf: Buffer, object: string): StartupProfile {
  const bad = (what: string): ClipError => new ClipError('ECORRUPT', `not a usable profile: ${what}`, { object });
  if (buf.length > MAX_PROFILE_BYTES) throw bad(`${buf.length} bytes`);
  if (buf.length < PROFILE_MAGIC.length + 1 + 32 || !buf.subarray(0, PROFILE_MAGIC.length).equals(PROFILE_MAGIC)) throw bad('no profile header (truncated or another file)');
  const body = buf.subarray(0, buf.length - 32);
  if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) throw bad('checksum mismatch (damaged or truncated)');
  const r: Reader = new Reader(body, object);
  r.pos = PROFILE_MAGIC.length;
  const version = r.uint();
  if (version !== PROFILE_VERSION) throw bad(`format version ${version}, this build reads ${PROFILE_VERSION}`);
  const manifestDigest = r.str();
  const indexDigest = r.str();
  const layerCount = r.count(4096, 'layers');
  const layers = Array.from({ length: layerCount }, () => r.str());
  const rangeCount = r.count(body.length, 'ranges');
  const ranges: ProfileRange[] = [];
  for (let i = 0; i < rangeCount; i++) {
    const range = { layer: r.uint(), offset: r.uint(), length: r.uint(), atMs: r.uint(), ino: r.uint() };
    if (range.layer >= layerCount) r.fail(`range ${i} names layer ${range.layer} of ${layerCount}`);
    if (range.length === 0 || !Number.isSafeInteger(range.offset + range.length)) r.fail(`range ${i} is empty or too long`);
    ranges.push(range);
  }
  const learned = new Map<number, LearnedCheckpoint[]>();
  const learnedLayers = r.count(layerCount, 'layers of learned checkpoints');
  for (let i = 0; i < learnedLayers; i++) {
    const layer = r.uint();
    if (layer >= layerCount || learned.has(layer)) r.fail(`learned checkpoints of layer ${layer}`);
    const n = r.count(body.length, 'learned checkpoints');
    const list: LearnedCheckpoint[] = [];
    for (let j = 0; j < n; j++) {
      const out = r.uint();
      const inBits = r.uint();
      // Kept deflated: inflated off the event loop where a fetch starts from it (unpackWindow).
      // The trailer catches damage; a window that still does not fit fails that fetch, which
      // drops the checkpoint and starts again from the index's own (a profile is a hint).
      list.push({ out, inBits, window: NO_WINDOW, packed: r.bytes(PACKED_WINDOW_MAX) });
    }
    learned.set(layer, list);
  }
  if (r.pos !== body.length) r.fail(`${body.length - r.pos} bytes after the end`);
  return { manifestDigest, indexDigest, layers, ranges, learned };
}
