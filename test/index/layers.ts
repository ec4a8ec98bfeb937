/** Hand-made layers for the index tests: TarEntry lists without a tar in sight. */
import { createHash } from 'node:crypto';
import type { LayerScan, TarEntry } from '../../src/archive/types.js';
import { ImageIndex } from '../../src/index/reader.js';
import { type ImageMeta, S_IFMT, entryTypeOf } from '../../src/index/types.js';
import { buildIndex } from '../../src/index/writer.js';
import { asBytePath } from '../archive/tar-builder.js';

let nextOffset = 512;

/** Tests write paths as text; entry() turns them into the byte strings a TarEntry carries. */
export function entry(path: string, over: Partial<TarEntry> = {}): TarEntry {
  const headerOffset = nextOffset;
  nextOffset += 1024;
  return {
    type: 'file', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', size: 0,
    mtimeSec: 1_700_000_000, mtimeNsec: 0, devMajor: 0, devMinor: 0,
    xattrs: new Map(), headerOffset, dataOffset: headerOffset + 512, ...over,
    path: asBytePath(path),
    linkTarget: asBytePath(over.linkTarget ?? ''),
  };
}

export const file = (path: string, over: Partial<TarEntry> = {}): TarEntry => entry(path, { type: 'file', size: 5, ...over });
export const dir = (path: string, over: Partial<TarEntry> = {}): TarEntry => entry(path, { type: 'dir', mode: 0o755, ...over });
export const symlink = (path: string, target: string, over: Partial<TarEntry> = {}): TarEntry =>
  entry(path, { type: 'symlink', mode: 0o777, linkTarget: target, ...over });
export const hardlink = (path: string, target: string, over: Partial<TarEntry> = {}): TarEntry =>
  entry(path, { type: 'hardlink', linkTarget: target, ...over });
export const whiteout = (path: string): TarEntry => {
  const slash = path.lastIndexOf('/');
  return entry(`${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, { size: 0 });
};
export const opaque = (dirPath: string): TarEntry => entry(dirPath === '' ? '.wh..wh..opq' : `${dirPath}/.wh..wh..opq`, { size: 0 });

export function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** A scan whose sizes are consistent with its entries (the reader checks that every file lies inside its layer). */
export function scanOf(entries: TarEntry[], i = 0, over: Partial<LayerScan> = {}): LayerScan {
  const end = entries.reduce((n, e) => Math.max(n, e.type === 'file' ? e.dataOffset + e.size : 0), 0);
  const uncompressedSize = Math.max(4096 * (i + 1), end);
  const chunkSize = uncompressedSize > 2 ** 30 ? 2 ** 30 : 1 << 20;
  const chunkDigests = Buffer.concat(Array.from({ length: Math.ceil(uncompressedSize / chunkSize) },
    (_, c) => createHash('sha256').update(`chunk ${i}.${c}`).digest()));
  return {
    compression: 'gzip', compressedSize: Math.max(1000 + i, Math.ceil(uncompressedSize / 4)), uncompressedSize,
    digest: sha256(`blob ${i}`), diffId: sha256(`tar ${i}`), entries,
    checkpoints: [{ out: 0, in: 10, bits: 0, window: Buffer.alloc(0) }],
    chunkSize, chunkDigests,
    ...over,
  };
}

export function metaOf(scans: LayerScan[]): ImageMeta {
  return {
    reference: 'registry.test:5000/team/app:1.0',
    location: 'registry.test:5000/team/app',
    manifestDigest: sha256('manifest'),
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    platform: { os: 'linux', architecture: 'amd64' },
    config: Buffer.from('{"architecture":"amd64","os":"linux"}'),
    layers: scans.map((s) => ({
      digest: s.digest, diffId: s.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      compression: s.compression, compressedSize: s.compressedSize, uncompressedSize: s.uncompressedSize,
    })),
  };
}

/** Merge, serialise and load: the index a list of layers produces. */
export function indexOf(...layers: TarEntry[][]): ImageIndex {
  const scans = layers.map((entries, i) => scanOf(entries, i));
  return new ImageIndex(buildIndex(metaOf(scans), scans), 'test.clipindex');
}

export interface PathView {
  type: string;
  perm: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  mtime: string;
  target?: string;
  rdev?: string;
  data?: string;
  xattrs?: Record<string, string>;
}

/** Every path of the index with what a user could observe of it. */
export function viewOf(index: ImageIndex): Map<string, PathView> {
  const out = new Map<string, PathView>();
  for (const { path, ino } of index.walk()) {
    const a = index.getattr(ino);
    const type = entryTypeOf(a.mode & S_IFMT);
    const v: PathView = {
      type, perm: a.mode & 0o7777, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, ino,
      mtime: `${a.mtimeSec}.${String(a.mtimeNsec).padStart(9, '0')}`,
    };
    if (type === 'symlink') v.target = index.readlink(ino).toString();
    if (type === 'char' || type === 'block') v.rdev = `${a.rdevMajor}:${a.rdevMinor}`;
    const loc = index.dataLocation(ino);
    if (loc) v.data = `${loc.layer}@${loc.offset}+${loc.size}`;
    const names = index.listxattr(ino);
    if (names.length > 0) v.xattrs = Object.fromEntries(names.map((n) => [n, index.getxattr(ino, n)!.toString('hex')]));
    out.set(path, v);
  }
  return out;
}

export function pathsOf(index: ImageIndex): string[] {
  return [...index.walk()].map((e) => e.path);
}
