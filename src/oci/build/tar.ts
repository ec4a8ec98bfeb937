/**
 * Writes a layer's entry list as a tar stream with tar-stream. Entries that need PAX (nanosecond
 * mtimes, xattrs, long or non-ASCII names, large ids) get a PAX header that this module encodes
 * itself, because tar-stream's PAX encoder is string-based and would corrupt binary xattr values.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { pack as tarPack, type Pack, type Header } from 'tar-stream';
import { ClipError } from '../../util/errors.js';
import type { LayerEntry, FileContent } from './entries.js';
import { encodePaxRecords, paxTime } from './pax.js';

const USTAR_ID_MAX = 0o777777; // six octal digits in tar-stream's header fields
const USTAR_TIME_MAX = 0o77777777777;
// tar-stream replaces a falsy mode with its default, so the file-type bits ride along (masked off when encoded).
const S_IFMT_BITS: Record<LayerEntry['type'], number> = {
  file: 0o100000, dir: 0o040000, symlink: 0o120000, hardlink: 0o100000, fifo: 0o010000, char: 0o020000, block: 0o060000,
};
const TAR_TYPES: Record<LayerEntry['type'], Header['type']> = {
  file: 'file', dir: 'directory', symlink: 'symlink', hardlink: 'link', fifo: 'fifo', char: 'character-device', block: 'block-device',
};

// Printable ASCII only in ustar fields; anything else (UTF-8, control characters) goes to PAX.
const isAscii = (s: string): boolean => /^[ -~]*$/.test(s);

/** Whether tar-stream can write `name` in a plain ustar header (name, or prefix + name). */
function fitsUstarName(name: string): boolean {
  if (!isAscii(name)) return false;
  if (name.length <= 100) return true;
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    if (i <= 155 && name.length - i - 1 <= 100 && name.length - i - 1 > 0) return true;
  }
  return false;
}

/** An ASCII stand-in for a ustar field whose real value is in the entry's PAX record. */
function standIn(value: string, max: number): string {
  return value.replace(/[^\x20-\x7e]/g, '_').slice(0, max).replace(/\/+$/, '') || 'pax';
}

/** The typeflag 'x' header block, its records, and the padding to a whole block. */
function paxHeader(name: string, records: Buffer, mtimeSec: number): Buffer {
  const block = Buffer.alloc(512);
  const oct = (v: number, width: number): string => v.toString(8).padStart(width - 1, '0') + '\0';
  block.write(standIn(`PaxHeaders/${name.slice(name.lastIndexOf('/') + 1)}`, 100), 0, 'ascii');
  block.write(oct(0o644, 8), 100);
  block.write(oct(0, 8), 108);
  block.write(oct(0, 8), 116);
  block.write(oct(records.length, 12), 124);
  block.write(oct(Math.min(Math.max(0, mtimeSec), USTAR_TIME_MAX), 12), 136);
  block.write('x', 156, 'ascii');
  block.write('ustar\x0000', 257, 'latin1');
  block.write('        ', 148, 'ascii');
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return Buffer.concat([block, records, Buffer.alloc((512 - (records.length % 512)) % 512)]);
}

interface PreparedEntry {
  header: Header;
  pax: Buffer | null;
}

function prepare(entry: LayerEntry, size: number): PreparedEntry {
  if (!entry.path || entry.path.includes('\0')) throw new ClipError('EINVAL', 'tar entry path is empty or holds a NUL', { object: entry.path });
  const records: Array<[string, Buffer | string]> = [];
  const name = entry.type === 'dir' ? entry.path.replace(/\/+$/, '') : entry.path;
  const sec = entry.mtime?.sec ?? 0;
  const nsec = entry.mtime?.nsec ?? 0;
  const uid = entry.uid ?? 0;
  const gid = entry.gid ?? 0;
  const linkname = entry.type === 'symlink' || entry.type === 'hardlink' ? entry.target : '';

  // Directories carry a trailing slash, as docker, umoci and GNU tar write them.
  let headerName = entry.type === 'dir' ? `${name}/` : name;
  if (!fitsUstarName(headerName)) {
    records.push(['path', headerName]);
    headerName = standIn(name, 99);
  }
  let headerLink = linkname;
  if (linkname && (!isAscii(linkname) || linkname.length > 100)) {
    records.push(['linkpath', linkname]);
    headerLink = standIn(linkname, 100);
  }
  if (nsec || sec < 0 || sec > USTAR_TIME_MAX) records.push(['mtime', paxTime(sec, nsec)]);
  if (uid > USTAR_ID_MAX) records.push(['uid', String(uid)]);
  if (gid > USTAR_ID_MAX) records.push(['gid', String(gid)]);
  for (const [field, value] of [['uname', entry.uname], ['gname', entry.gname]] as const) {
    if (value && (!isAscii(value) || value.length > 32)) records.push([field, value]);
  }
  for (const [key, value] of Object.entries(entry.xattrs ?? {})) records.push([`SCHILY.xattr.${key}`, value]);

  const defaultMode = entry.type === 'dir' ? 0o755 : entry.type === 'symlink' ? 0o777 : 0o644;
  const header: Header = {
    name: headerName,
    size,
    mode: S_IFMT_BITS[entry.type] | ((entry.mode ?? defaultMode) & 0o7777),
    mtime: new Date(Math.min(Math.max(sec, 0), USTAR_TIME_MAX) * 1000),
    type: TAR_TYPES[entry.type],
    linkname: headerLink,
    uid: uid > USTAR_ID_MAX ? 0 : uid,
    gid: gid > USTAR_ID_MAX ? 0 : gid,
    uname: entry.uname && isAscii(entry.uname) ? entry.uname.slice(0, 32) : '',
    gname: entry.gname && isAscii(entry.gname) ? entry.gname.slice(0, 32) : '',
    devmajor: entry.type === 'char' || entry.type === 'block' ? entry.major : 0,
    devminor: entry.type === 'char' || entry.type === 'block' ? entry.minor : 0,
  };
  return { header, pax: records.length ? paxHeader(name, encodePaxRecords(records), sec) : null };
}

async function contentSize(content: FileContent, path: string): Promise<number> {
  if (Buffer.isBuffer(content)) return content.length;
  if (typeof content === 'string') return Buffer.byteLength(content);
  if ('path' in content) {
    const st = await stat(content.path).catch((err: unknown) => {
      throw new ClipError('ENOTFOUND', `cannot read the content of ${path}`, { object: content.path, cause: err });
    });
    if (!st.isFile()) throw new ClipError('EINVAL', `content for ${path} is not a regular file`, { object: content.path });
    return st.size;
  }
  return content.size;
}

function contentStream(content: Exclude<FileContent, Buffer | string>): Readable {
  return 'path' in content ? createReadStream(content.path) : content.generate();
}

/** Waits for tar-stream to finish an entry: after that the pack is idle and a PAX block may be pushed. */
function entryDone(pack: Pack, header: Header, body?: Buffer): { sink: ReturnType<Pack['entry']>; done: Promise<void> } {
  let sink!: ReturnType<Pack['entry']>;
  const done = new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    sink = body ? pack.entry(header, body, cb) : pack.entry(header, cb); // a file's body, even empty, ends its sink
  });
  done.catch(() => undefined); // when the entry is abandoned, the pack reports the failure instead
  return { sink, done };
}

async function writeEntry(pack: Pack, entry: LayerEntry): Promise<void> {
  const content = entry.type === 'file' ? entry.content : undefined;
  const size = content === undefined ? 0 : await contentSize(content, entry.path);
  const { header, pax } = prepare(entry, size);
  if (pax) pack.push(pax);
  if (content === undefined || Buffer.isBuffer(content) || typeof content === 'string') {
    const body = content === undefined ? undefined : Buffer.from(content);
    await entryDone(pack, header, body).done;
    return;
  }
  const { sink, done } = entryDone(pack, header);
  // Failures surface through `done` and the pack; without a listener streamx would throw them.
  sink.on('error', () => undefined);
  let written = 0;
  try {
    for await (const chunk of contentStream(content)) {
      written += (chunk as Buffer).length;
      if (written > size) break;
      if (!sink.write(chunk as Buffer)) await once(sink, 'drain');
    }
  } catch (err) {
    if (sink.destroyed) throw err; // the tar's consumer went away: not this file's fault
    throw new ClipError('ENOTFOUND', 'reading file content failed', { object: entry.path, cause: err });
  }
  if (written !== size) throw new ClipError('EINVAL', `content has ${written > size ? 'more' : written} bytes, not the ${size} announced`, { object: entry.path });
  sink.end(undefined); // streamx types ask for an argument; undefined ends without data
  await done;
}

/** The tar stream of `entries`, in order, ending with the two zero blocks. */
export function tarStream(entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>): Readable {
  const pack = tarPack();
  const drive = async (): Promise<void> => {
    for await (const entry of entries) await writeEntry(pack, entry);
    pack.finalize();
  };
  drive().catch((err: unknown) => pack.destroy(err as Error));
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}
