import { ClipError } from '../util/errors.js';
import type { EntryType, TarEntry } from './types.js';
import { BLOCK, checksumOk, isZeroBlock, numericField, parsePaxRecords, parsePaxTime, stringField } from './tar-fields.js';
import { normaliseTarPath, shownPath, type UnsafePathPolicy } from './tar-path.js';

export interface TarWalkerOptions {
  /** Names the layer in errors. */
  name?: string;
  unsafePaths?: UnsafePathPolicy;
  /** Largest PAX or GNU long-name payload accepted (default 16 MiB). */
  maxMetaSize?: number;
}

/** The xattrs of every entry that has none: one shared map, never written to, instead of one per entry. */
export const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

const TYPES: Record<string, EntryType> = {
  '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
};

/** What the entry-specific headers before a real header ('x', 'L', 'K') said. */
interface Prelude {
  headerOffset: number;
  pax: Map<string, Buffer>;
  longName?: string;
  longLink?: string;
}

type Phase = 'header' | 'meta' | 'skip' | 'end';

/**
 * Streaming tar reader that only tracks offsets: push bytes in, get entries (with the offsets of
 * their headers and contents) out. File contents are skipped, never copied.
 * Like GNU tar it stops at the first zero block and accepts an archive that ends without one.
 */
export class TarWalker {
  private readonly opts: TarWalkerOptions;
  private readonly policy: UnsafePathPolicy;
  private readonly maxMeta: number;
  private phase: Phase = 'header';
  /** Absolute offset of the next byte push() will see. */
  private offset = 0;
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private skipLeft = 0;
  private entryPath = '';
  private meta: { kind: string; buf: Buffer; fill: number; padded: number } | null = null;
  private prelude: Prelude | null = null;
  private readonly global = new Map<string, Buffer>();
  private readonly names = new Map<string, string>();

  constructor(opts: TarWalkerOptions = {}) {
    this.opts = opts;
    this.policy = opts.unsafePaths ?? 'neutralise';
    this.maxMeta = opts.maxMetaSize ?? 16 * 1024 * 1024;
  }

  /** Feed the next bytes of the tar stream; returns the entries whose headers completed. */
  push(chunk: Uint8Array): TarEntry[] {
    const found: TarEntry[] = [];
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      switch (this.phase) {
        case 'end':
          pos = len;
          break;
        case 'skip': {
          const n = Math.min(this.skipLeft, len - pos);
          pos += n;
          this.skipLeft -= n;
          if (this.skipLeft === 0) this.phase = 'header';
          break;
        }
        case 'meta': {
          const m = this.meta!;
          const n = Math.min(m.padded - m.fill, len - pos);
          const dataPart = Math.max(0, Math.min(n, m.buf.length - m.fill));
          if (dataPart > 0) m.buf.set(chunk.subarray(pos, pos + dataPart), m.fill);
          m.fill += n;
          pos += n;
          if (m.fill === m.padded) {
            this.meta = null;
            this.phase = 'header';
            this.applyMeta(m.kind, m.buf, this.offset + pos - m.padded - BLOCK);
          }
          break;
        }
        case 'header': {
          const n = Math.min(BLOCK - this.blockFill, len - pos);
          this.block.set(chunk.subarray(pos, pos + n), this.blockFill);
          this.blockFill += n;
          pos += n;
          if (this.blockFill === BLOCK) {
            this.blockFill = 0;
            const entry = this.parseHeader(this.offset + pos - BLOCK);
            if (entry) found.push(entry);
          }
          break;
        }
      }
    }
    this.offset += len;
    return found;
  }

  /** Call at end of stream: throws ECORRUPT if it ended inside a header or an entry. */
  end(): void {
    if (this.phase === 'end') return;
    if (this.phase === 'header' && this.blockFill === 0 && !this.prelude) return;
    const what = this.phase === 'skip' ? `inside the data of "${this.entryPath}"` : this.phase === 'meta' ? 'inside an extended header' : 'inside a header';
    throw this.corrupt(`truncated tar: stream ends at byte ${this.offset} ${what}`);
  }

  private parseHeader(at: number): TarEntry | null {
    const b = this.block;
    if (isZeroBlock(b)) {
      if (this.prelude) throw this.corrupt(`zero block at byte ${at} where an entry header was expected`);
      this.phase = 'end';
      return null;
    }
    if (!checksumOk(b)) throw this.corrupt(`bad tar header checksum at byte ${at}`);
    const flag = String.fromCharCode(b[156]!);
    const magic = b.toString('latin1', 257, 263);
    const isUstar = magic === 'ustar\0';
    let name = stringField(b, 0, 100, 'latin1');
    if (isUstar) {
      const prefix = stringField(b, 345, 155, 'latin1');
      if (prefix) name = `${prefix}/${name}`;
    }
    const headerSize = this.number(b, 124, 12, at, 'size');
    if (headerSize < 0) throw this.corrupt(`negative size in tar header at byte ${at}`);

    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (headerSize > this.maxMeta) throw new ClipError('EUNSUPPORTED', `extended tar header of ${headerSize} bytes at byte ${at} is too large`, { object: this.opts.name });
      if (flag !== 'g' && !this.prelude) this.prelude = { headerOffset: at, pax: new Map() };
      this.meta = { kind: flag, buf: Buffer.alloc(headerSize), fill: 0, padded: roundUp(headerSize) };
      this.phase = this.meta.padded ? 'meta' : 'header';
      if (!this.meta.padded) this.applyMeta(flag, this.meta.buf, at);
      return null;
    }

    const prelude = this.prelude;
    this.prelude = null;
    const pax = new Map(this.global);
    for (const [k, v] of prelude?.pax ?? []) {
      if (v.length === 0) pax.delete(k);
      else pax.set(k, v);
    }
    const paxText = (key: string): string | undefined => pax.get(key)?.toString('utf8');
    const paxPath = (key: string): string | undefined => pax.get(key)?.toString('latin1');
    const rawPath = paxPath('path') ?? prelude?.longName ?? name;
    const shown = shownPath(rawPath);
    this.entryPath = shown;

    if (flag === 'S' || [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
      throw new ClipError('EUNSUPPORTED', `GNU sparse tar entry "${shown}" at byte ${at} is not supported`, { object: this.opts.name });
    }
    let type: EntryType | undefined = TYPES[flag];
    if (flag === 'D') type = 'dir'; // GNU dumpdir: a directory whose data lists its contents
    if (flag === '\0' && rawPath.endsWith('/')) type = 'dir'; // pre-POSIX archives mark directories by the slash
    if (flag === 'V') { // GNU volume label: not a file
      this.startSkip(roundUp(headerSize));
      return null;
    }
    if (!type) throw new ClipError('EUNSUPPORTED', `tar entry "${shown}" at byte ${at} has unsupported type '${flag}'`, { object: this.opts.name });

    const paxSize = paxText('size');
    const size = paxSize !== undefined ? this.paxNumber(paxSize, at, 'size') : headerSize;
    // As Go's archive/tar: links, devices, directories and FIFOs carry no data whatever size says.
    const dataSize = type === 'file' || flag === 'D' ? size : 0;

    const object = this.opts.name;
    const path = normaliseTarPath(rawPath, this.policy, object);
    if (path === '' && type !== 'dir') throw new ClipError('EUNSAFE', `tar entry "${shown}" at byte ${at} would replace the root`, { object });
    let linkTarget = paxPath('linkpath') ?? prelude?.longLink ?? stringField(b, 157, 100, 'latin1');
    if (type === 'hardlink') {
      linkTarget = normaliseTarPath(linkTarget, this.policy, object);
      if (linkTarget === '') throw new ClipError('EUNSAFE', `hardlink "${shown}" at byte ${at} points at the root`, { object });
    }

    let mtimeSec = this.number(b, 136, 12, at, 'mtime');
    let mtimeNsec = 0;
    const paxMtime = paxText('mtime');
    if (paxMtime !== undefined) {
      const t = parsePaxTime(paxMtime);
      if (!t) throw this.corrupt(`bad PAX mtime "${paxMtime}" for "${shown}" at byte ${at}`);
      mtimeSec = t.sec;
      mtimeNsec = t.nsec;
    }
    let xattrs = NO_XATTRS as Map<string, Buffer>;
    for (const [k, v] of pax) {
      if (xattrs === NO_XATTRS && (k.startsWith('SCHILY.xattr.') || k.startsWith('LIBARCHIVE.xattr.'))) xattrs = new Map();
      if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), Buffer.from(v));
      else if (k.startsWith('LIBARCHIVE.xattr.')) xattrs.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v.toString('latin1'), 'base64'));
    }
    const paxUid = paxText('uid');
    const paxGid = paxText('gid');
    const isDev = type === 'char' || type === 'block';
    const entry: TarEntry = {
      path,
      type,
      mode: this.number(b, 100, 8, at, 'mode') & 0o7777,
      uid: paxUid !== undefined ? this.paxNumber(paxUid, at, 'uid') : this.number(b, 108, 8, at, 'uid'),
      gid: paxGid !== undefined ? this.paxNumber(paxGid, at, 'gid') : this.number(b, 116, 8, at, 'gid'),
      uname: this.intern(paxText('uname') ?? stringField(b, 265, 32)),
      gname: this.intern(paxText('gname') ?? stringField(b, 297, 32)),
      size: type === 'file' ? size : 0,
      mtimeSec,
      mtimeNsec,
      linkTarget: type === 'hardlink' || type === 'symlink' ? linkTarget : '',
      devMajor: isDev ? this.number(b, 329, 8, at, 'devmajor') : 0,
      devMinor: isDev ? this.number(b, 337, 8, at, 'devminor') : 0,
      xattrs,
      headerOffset: prelude?.headerOffset ?? at,
      dataOffset: at + BLOCK,
    };
    this.startSkip(roundUp(dataSize));
    return entry;
  }

  /** One string per distinct owner name ("root" a million times is one string), up to a bound. */
  private intern(name: string): string {
    const known = this.names.get(name);
    if (known !== undefined) return known;
    if (this.names.size < 1024) this.names.set(name, name);
    return name;
  }

  private startSkip(padded: number): void {
    this.skipLeft = padded;
    this.phase = padded ? 'skip' : 'header';
  }

  private applyMeta(kind: string, buf: Buffer, at: number): void {
    if (kind === 'L' || kind === 'K') {
      const nul = buf.indexOf(0);
      const text = buf.toString('latin1', 0, nul < 0 ? buf.length : nul);
      if (kind === 'L') this.prelude!.longName = text;
      else this.prelude!.longLink = text;
      return;
    }
    const records = parsePaxRecords(buf);
    if (!records) throw this.corrupt(`malformed PAX header at byte ${at}`);
    for (const [k, v] of records) {
      if (kind === 'g') {
        if (v.length === 0) this.global.delete(k);
        else this.global.set(k, Buffer.from(v));
      } else {
        this.prelude!.pax.set(k, Buffer.from(v));
      }
    }
  }

  private number(b: Buffer, start: number, length: number, at: number, field: string): number {
    const v = numericField(b, start, length);
    if (Number.isNaN(v)) throw this.corrupt(`bad ${field} field in tar header at byte ${at}`);
    return v;
  }

  private paxNumber(text: string, at: number, field: string): number {
    if (!/^\d+$/.test(text)) throw this.corrupt(`bad PAX ${field} "${text}" at byte ${at}`);
    return Number(text);
  }

  private corrupt(message: string): ClipError {
    return new ClipError('ECORRUPT', message, { object: this.opts.name });
  }
}

function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}
