import { crc32 } from 'node:zlib';
import { ClipError } from '../util/errors.js';
import type { Checkpoint } from './types.js';
import { gzipHeaderLength } from './gzip-header.js';
import {
  createRawInflate, pakoInflate, Z_BLOCK, Z_BUF_ERROR, Z_OK, Z_STREAM_END, DT_AT_BOUNDARY, DT_LAST_BLOCK,
  type PakoZStream,
} from './pako-inflate.js';

/** A deflate block boundary: where inflation could restart (see Checkpoint). */
export interface BlockBoundary {
  out: number;
  in: number;
  bits: number;
  /** True at the start of a gzip member: nothing before it is needed (empty window). */
  memberStart: boolean;
}

export interface GzipInflaterOptions {
  /** Start inside a layer from this checkpoint; the first byte written must be `in - 1` if bits, else `in`. */
  resume?: Checkpoint;
  /** Start at the trailer of a member whose start was not seen (`in`: the trailer's offset); it is not checked. */
  resumeAtTrailer?: { in: number; out: number };
  /** Called at every block boundary that is not the end of a member. */
  onBoundary?: (b: BlockBoundary, strm: PakoZStream) => void;
  /** Hand out views of one reused output buffer (the consumer must finish with them at once). */
  reuseOutput?: boolean;
  outputSize?: number;
  /** Names the layer in errors. */
  name?: string;
}

/** Longest gzip member header accepted (FEXTRA is at most 64 KiB; names are short). */
const MAX_HEADER = 1024 * 1024;

type Phase = 'header' | 'deflate' | 'trailer' | 'member-start' | 'padding';

/**
 * Streaming gzip decoder over pako's raw inflate: parses member headers and trailers itself
 * (CRC32 with node's native crc32, ISIZE), handles concatenated members and zero padding after
 * the last, and reports deflate block boundaries so that checkpoints can be placed.
 */
export class GzipInflater {
  private readonly strm: PakoZStream;
  private readonly opts: GzipInflaterOptions;
  private readonly outputSize: number;
  private phase: Phase;
  private output: Uint8Array;
  /** Absolute compressed offset of the next byte write() will see. */
  private inPos: number;
  private outTotal: number;
  private pending: Buffer = Buffer.alloc(0);
  private crc = 0;
  private memberOut = 0;
  /** The first member of a resumed stream is partial: its trailer cannot be checked. */
  private checkTrailer: boolean;
  private members = 0;
  private primeBits = 0;

  constructor(opts: GzipInflaterOptions = {}) {
    this.opts = opts;
    this.outputSize = opts.outputSize ?? 256 * 1024;
    this.output = new Uint8Array(this.outputSize);
    this.strm = createRawInflate();
    const r = opts.resume;
    if (r) {
      this.phase = 'deflate';
      this.inPos = r.bits ? r.in - 1 : r.in;
      this.outTotal = r.out;
      this.checkTrailer = false;
      this.primeBits = r.bits;
      if (r.window.length) pakoInflate.inflateSetDictionary(this.strm, r.window);
    } else if (opts.resumeAtTrailer) {
      this.phase = 'trailer';
      this.inPos = opts.resumeAtTrailer.in;
      this.outTotal = opts.resumeAtTrailer.out;
      this.checkTrailer = false;
    } else {
      this.phase = 'header';
      this.inPos = 0;
      this.outTotal = 0;
      this.checkTrailer = true;
    }
  }

  get compressedOffset(): number {
    return this.inPos;
  }

  get uncompressedOffset(): number {
    return this.outTotal;
  }

  /** Decode `chunk`; every piece of output goes to onData in order. */
  write(chunk: Uint8Array, onData: (out: Uint8Array) => void): void {
    let pos = 0;
    const base = this.inPos;
    if (this.primeBits && chunk.length) {
      // zran's inflatePrime: the high `bits` bits of byte in-1 begin the next block.
      const st = this.strm.state;
      st.hold = chunk[0]! >> (8 - this.primeBits);
      st.bits = this.primeBits;
      this.primeBits = 0;
      pos = 1;
    }
    while (pos < chunk.length) {
      switch (this.phase) {
        case 'deflate':
          pos = this.inflate(chunk, pos, base, onData);
          break;
        case 'header':
        case 'trailer': {
          const need = this.phase === 'trailer' ? 8 - this.pending.length : Infinity;
          const take = chunk.subarray(pos, pos + Math.min(need, chunk.length - pos));
          const buf = this.pending.length ? Buffer.concat([this.pending, take]) : Buffer.from(take.buffer, take.byteOffset, take.length);
          const before = this.pending.length;
          const used = this.phase === 'header' ? this.parseHeader(buf, base + pos - before) : this.parseTrailer(buf, base + pos - before);
          if (used < 0) {
            if (buf.length > MAX_HEADER) throw this.corrupt(`gzip header at byte ${base + pos - before} is longer than ${MAX_HEADER} bytes`);
            this.pending = Buffer.from(buf);
            pos = chunk.length;
          } else {
            this.pending = Buffer.alloc(0);
            pos += used - before;
          }
          break;
        }
        case 'member-start':
          if (chunk[pos] === 0x1f) this.phase = 'header';
          else if (chunk[pos] === 0) this.phase = 'padding';
          else throw this.corrupt(`unexpected byte after gzip member at byte ${base + pos}`);
          break;
        case 'padding':
          for (; pos < chunk.length; pos++) {
            if (chunk[pos] !== 0) throw this.corrupt(`non-zero byte in padding after the last gzip member at byte ${base + pos}`);
          }
          break;
      }
    }
    this.inPos = base + chunk.length;
  }

  /** Call at end of input: a stream that stops inside a member is truncated. */
  finish(): void {
    if (this.opts.resume || this.opts.resumeAtTrailer) return;
    const complete = (this.phase === 'member-start' || this.phase === 'padding') && this.members > 0;
    if (!complete) throw this.corrupt(`truncated gzip data: ends at byte ${this.inPos} inside a member`);
  }

  /** True once a resumed or full stream has seen the end of the member it was in. */
  get atMemberEnd(): boolean {
    return this.phase === 'member-start' || this.phase === 'padding';
  }

  private parseHeader(buf: Buffer, at: number): number {
    const len = gzipHeaderLength(buf, this.opts.name, at);
    if (len < 0) return -1;
    pakoInflate.inflateReset(this.strm);
    this.phase = 'deflate';
    this.crc = 0;
    this.memberOut = 0;
    this.opts.onBoundary?.({ out: this.outTotal, in: at + len, bits: 0, memberStart: true }, this.strm);
    return len;
  }

  private parseTrailer(buf: Buffer, at: number): number {
    if (buf.length < 8) return -1;
    if (this.checkTrailer) {
      const crc = buf.readUInt32LE(0);
      const isize = buf.readUInt32LE(4);
      if (crc !== this.crc) throw this.corrupt(`gzip CRC32 mismatch in the member ending at byte ${at + 8}`);
      if (isize !== this.memberOut % 2 ** 32) throw this.corrupt(`gzip length mismatch in the member ending at byte ${at + 8}`);
    }
    this.checkTrailer = true;
    this.members++;
    this.phase = 'member-start';
    return 8;
  }

  private inflate(chunk: Uint8Array, pos: number, base: number, onData: (out: Uint8Array) => void): number {
    const strm = this.strm;
    strm.input = chunk;
    strm.next_in = pos;
    strm.avail_in = chunk.length - pos;
    const track = this.opts.onBoundary !== undefined;
    for (;;) {
      if (this.opts.reuseOutput) {
        strm.output = this.output;
        strm.next_out = 0;
        strm.avail_out = this.output.length;
      } else if (strm.output !== this.output || strm.avail_out === 0) {
        // Views already handed out stay valid: a full buffer is replaced, never overwritten.
        if (strm.output === this.output) this.output = new Uint8Array(this.outputSize);
        strm.output = this.output;
        strm.next_out = 0;
        strm.avail_out = this.output.length;
      }
      const start = strm.next_out;
      const ret = pakoInflate.inflate(strm, track ? Z_BLOCK : 0);
      const produced = strm.next_out - start;
      if (produced) {
        const view = this.output.subarray(start, strm.next_out);
        if (this.checkTrailer) this.crc = crc32(view, this.crc);
        this.memberOut += produced;
        this.outTotal += produced;
        onData(view);
      }
      if (ret === Z_STREAM_END) {
        this.phase = 'trailer';
        return strm.next_in;
      }
      if (ret !== Z_OK && ret !== Z_BUF_ERROR) {
        throw this.corrupt(`invalid deflate data near byte ${base + strm.next_in}${strm.msg ? ` (${strm.msg})` : ''}`);
      }
      if (track && (strm.data_type & DT_AT_BOUNDARY) && !(strm.data_type & DT_LAST_BLOCK)) {
        const held = strm.state.bits;
        const nextIn = base + strm.next_in;
        this.opts.onBoundary!({ out: this.outTotal, in: nextIn - (held >> 3), bits: held & 7, memberStart: false }, strm);
      }
      if (strm.avail_in === 0 && strm.avail_out !== 0) return chunk.length;
      if (ret === Z_BUF_ERROR && produced === 0) return strm.next_in;
    }
  }

  private corrupt(message: string): ClipError {
    return new ClipError('ECORRUPT', message, { object: this.opts.name });
  }
}
