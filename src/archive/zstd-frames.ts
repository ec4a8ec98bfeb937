import { ClipError } from '../util/errors.js';

const ZSTD_MAGIC = 0xfd2fb528;

/** A piece of the compressed stream, tagged with where frames start and end. */
export interface ZstdSegment {
  bytes: Uint8Array;
  /** Absolute compressed offset of bytes[0]. */
  at: number;
  /** This segment begins a zstd frame (not a skippable one). */
  frameStart: boolean;
  /** This segment ends the frame it belongs to. */
  frameEnd: boolean;
  /** Part of a skippable frame: carries no data. */
  skippable: boolean;
}

type Phase = 'magic' | 'frame-header' | 'block-header' | 'block' | 'checksum' | 'skip';

/**
 * Walks zstd frame and block headers (RFC 8878) without decoding, to find where each frame starts
 * and ends: magic, frame header descriptor and its optional fields, 3-byte block headers (last
 * flag, type, size), optional 4-byte checksum, and skippable frames (magic 0x184D2A5?, LE size).
 */
export class ZstdFrameWalker {
  private phase: Phase = 'magic';
  private head = Buffer.alloc(18);
  private headFill = 0;
  private headNeed = 4;
  private left = 0;
  private lastBlock = false;
  private hasChecksum = false;
  private offset = 0;
  private frames = 0;
  private frameStarted = false;
  private skippable = false;
  private readonly name: string | undefined;

  constructor(name?: string) {
    this.name = name;
  }

  get frameCount(): number {
    return this.frames;
  }

  /** Split `chunk` into segments at frame boundaries. */
  write(chunk: Uint8Array): ZstdSegment[] {
    const segs: ZstdSegment[] = [];
    let pos = 0;
    let segStart = 0;
    const cut = (end: number, frameEnd: boolean): void => {
      if (end > segStart || frameEnd) {
        segs.push({ bytes: chunk.subarray(segStart, end), at: this.offset + segStart, frameStart: false, frameEnd, skippable: this.skippable });
      }
      segStart = end;
    };
    while (pos < chunk.length) {
      if (this.phase === 'block' || this.phase === 'skip') {
        const n = Math.min(this.left, chunk.length - pos);
        pos += n;
        this.left -= n;
        if (this.left === 0) {
          if (this.phase === 'skip') {
            cut(pos, true);
            this.skippable = false;
            this.toMagic();
          } else if (this.lastBlock) {
            if (this.hasChecksum) this.need('checksum', 4);
            else { cut(pos, true); this.toMagic(); }
          } else this.need('block-header', 3);
        }
        continue;
      }
      const n = Math.min(this.headNeed - this.headFill, chunk.length - pos);
      this.head.set(chunk.subarray(pos, pos + n), this.headFill);
      this.headFill += n;
      pos += n;
      if (this.headFill < this.headNeed) continue;
      const h = this.head;
      const at = this.offset + pos - this.headNeed;
      switch (this.phase) {
        case 'magic': {
          // The magic was kept in `head` (it may span chunks): emit it as its own segment.
          const magic = h.readUInt32LE(0);
          if (magic === ZSTD_MAGIC) {
            this.skippable = false;
            this.frameStarted = true;
            this.frames++;
            this.headNeed = 5;
          } else if ((magic & 0xfffffff0) === 0x184d2a50) {
            this.skippable = true;
            this.headNeed = 8;
          } else {
            throw new ClipError('ECORRUPT', `not zstd data at byte ${at} (bad frame magic)`, { object: this.name });
          }
          segs.push({ bytes: Buffer.from(h.subarray(0, 4)), at, frameStart: !this.skippable, frameEnd: false, skippable: this.skippable });
          segStart = pos;
          this.phase = 'frame-header';
          break;
        }
        case 'frame-header': {
          if (this.skippable) {
            this.left = h.readUInt32LE(4);
            this.phase = 'skip';
            this.headFill = 0;
            if (this.left === 0) { cut(pos, true); this.skippable = false; this.toMagic(); }
            break;
          }
          const fhd = h[4]!;
          if (fhd & 0x08) throw new ClipError('ECORRUPT', `zstd frame at byte ${at} sets a reserved bit`, { object: this.name });
          const single = (fhd >> 5) & 1;
          const dictBytes = [0, 1, 2, 4][fhd & 3]!;
          const fcsBytes = [single, 2, 4, 8][fhd >> 6]!;
          const total = 5 + (single ? 0 : 1) + dictBytes + fcsBytes;
          this.hasChecksum = (fhd & 0x04) !== 0;
          if (this.headNeed < total) { this.headNeed = total; break; }
          this.need('block-header', 3);
          break;
        }
        case 'block-header': {
          const v = h[0]! | (h[1]! << 8) | (h[2]! << 16);
          this.lastBlock = (v & 1) === 1;
          const type = (v >> 1) & 3;
          const size = v >>> 3;
          if (type === 3) throw new ClipError('ECORRUPT', `zstd block at byte ${at} has the reserved type`, { object: this.name });
          this.left = type === 1 ? 1 : size;
          this.phase = 'block';
          this.headFill = 0;
          if (this.left === 0 && this.lastBlock) {
            if (this.hasChecksum) this.need('checksum', 4);
            else { cut(pos, true); this.toMagic(); }
          } else if (this.left === 0) this.need('block-header', 3);
          break;
        }
        case 'checksum':
          cut(pos, true);
          this.toMagic();
          break;
      }
    }
    if (this.phase !== 'magic') cut(pos, false);
    this.offset += chunk.length;
    return segs;
  }

  /** Throws ECORRUPT unless the stream ended between frames (and held at least one). */
  end(): void {
    if (this.phase !== 'magic' || this.headFill !== 0 || this.frames === 0) {
      throw new ClipError('ECORRUPT', `truncated zstd data: ends at byte ${this.offset} inside a frame`, { object: this.name });
    }
  }

  private need(phase: Phase, n: number): void {
    this.phase = phase;
    this.headNeed = n;
    this.headFill = 0;
  }

  private toMagic(): void {
    this.frameStarted = false;
    this.need('magic', 4);
  }
}
