/** `clip ls IMAGE|INDEX [PATH]`: directory listings answered from the index alone. */
import { shownBytes } from '../../archive/tar-path.js';
import type { ImageIndex } from '../../index/reader.js';
import { entryTypeOf, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFSOCK, type Attr } from '../../index/types.js';
import { openForCommand } from '../image-arg.js';
import { type ReadCommandOptions } from '../read-options.js';
import { printable } from '../../util/printable.js';
import { printJson } from '../output.js';

/** `ls -l`'s mode column: "drwxr-xr-x", "-rwsr-xr-x", "crw-rw-rw-". */
export function modeString(mode: number): string {
  const types: Record<number, string> = { [S_IFDIR]: 'd', [S_IFLNK]: 'l', [S_IFCHR]: 'c', [S_IFBLK]: 'b', [S_IFIFO]: 'p', [S_IFSOCK]: 's' };
  const bit = (mask: number, c: string): string => (mode & mask ? c : '-');
  const exec = (x: number, special: number, set: string): string => {
    if (mode & special) return mode & x ? set : set.toUpperCase();
    return mode & x ? 'x' : '-';
  };
  return (types[mode & S_IFMT] ?? '-')
    + bit(0o400, 'r') + bit(0o200, 'w') + exec(0o100, 0o4000, 's')
    + bit(0o040, 'r') + bit(0o020, 'w') + exec(0o010, 0o2000, 's')
    + bit(0o004, 'r') + bit(0o002, 'w') + exec(0o001, 0o1000, 't');
}

/** Nanoseconds since the epoch as a decimal string (exact: no float). */
export function mtimeNs(a: Pick<Attr, 'mtimeSec' | 'mtimeNsec'>): string {
  return (BigInt(a.mtimeSec) * 1_000_000_000n + BigInt(a.mtimeNsec)).toString();
}

export function isoTime(a: Pick<Attr, 'mtimeSec' | 'mtimeNsec'>): string {
  const iso = new Date(a.mtimeSec * 1000).toISOString();
  return `${iso.slice(0, 19)}.${String(a.mtimeNsec).padStart(9, '0')}Z`;
}

/** An entry as --json gives it; names are text (archive/tar-path.ts shownBytes), control characters left to JSON's escaping. */
export interface ListedEntry {
  path: string;
  name: string;
  type: string;
  mode: string;
  perm: number;
  ino: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: string;
  linkTarget?: string;
  rdev?: string;
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

export function describeEntry(index: ImageIndex, path: string, ino: number): ListedEntry {
  const a = index.getattr(ino);
  const type = entryTypeOf(a.mode);
  const e: ListedEntry = {
    path, name: path === '/' ? '/' : path.slice(path.lastIndexOf('/') + 1), type, mode: modeString(a.mode), perm: a.mode & 0o7777,
    ino, nlink: a.nlink, uid: a.uid, gid: a.gid, size: a.size, mtimeNs: mtimeNs(a),
  };
  if (type === 'symlink') e.linkTarget = shownBytes(index.readlink(ino));
  if (type === 'char' || type === 'block') e.rdev = `${a.rdevMajor}:${a.rdevMinor}`;
  return e;
}

/** The entries of a directory (or the entry itself when it is not one), recursively with `recursive`. */
export function listPath(index: ImageIndex, path: string, recursive: boolean): ListedEntry[] {
  const clean = `/${path.split('/').filter(Boolean).join('/')}`;
  const self = index.resolvePathOrThrow(clean);
  // Like ls: a symlink to a directory lists the directory, any other non-directory lists itself.
  const target = entryTypeOf(index.mode(self)) === 'symlink' ? index.resolvePath(clean, { followLast: true }) : self;
  const ino = target !== 0 && entryTypeOf(index.mode(target)) === 'dir' ? target : self;
  if (entryTypeOf(index.mode(ino)) !== 'dir') return [describeEntry(index, clean, ino)];
  const out: ListedEntry[] = [];
  const visit = (dir: number, dirPath: string): void => {
    const children: Array<[string, number]> = [];
    index.readdir(dir, 0, (name, child) => {
      children.push([shownBytes(name), child]);
    });
    for (const [name, child] of children) out.push(describeEntry(index, join(dirPath, name), child));
    if (recursive) for (const [name, child] of children) if (entryTypeOf(index.mode(child)) === 'dir') visit(child, join(dirPath, name));
  };
  visit(ino, clean);
  return out;
}

export function formatLong(entries: ListedEntry[], showPath: boolean): string {
  const w = (k: (e: ListedEntry) => string): number => Math.max(0, ...entries.map((e) => k(e).length));
  const nlinkW = w((e) => String(e.nlink));
  const uidW = w((e) => String(e.uid));
  const gidW = w((e) => String(e.gid));
  const sizeW = w((e) => e.rdev ?? String(e.size));
  return entries.map((e) => {
    const time = isoTime({ mtimeSec: Number(BigInt(e.mtimeNs) / 1_000_000_000n), mtimeNsec: Number(BigInt(e.mtimeNs) % 1_000_000_000n) });
    const name = printable(showPath ? e.path : e.name) + (e.linkTarget !== undefined ? ` -> ${printable(e.linkTarget)}` : '');
    return `${e.mode} ${String(e.nlink).padStart(nlinkW)} ${String(e.uid).padStart(uidW)} ${String(e.gid).padStart(gidW)} ${(e.rdev ?? String(e.size)).padStart(sizeW)} ${time} ${name}\n`;
  }).join('');
}

export interface LsOptions extends ReadCommandOptions {
  long?: boolean;
  recursive?: boolean;
}

export async function lsCommand(image: string, path: string, opts: LsOptions): Promise<void> {
  const { img } = await openForCommand(image, opts);
  try {
    const entries = listPath(img.index, path, opts.recursive ?? false);
    if (opts.json) printJson(entries);
    else if (opts.long) process.stdout.write(formatLong(entries, opts.recursive ?? false));
    else process.stdout.write(entries.map((e) => `${printable(opts.recursive ? e.path : e.name)}\n`).join(''));
  } finally {
    await img.close();
  }
}
