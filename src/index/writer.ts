/** Serialise an image's merged tree and its layers' random-access data into the index file format. */
import { createHash } from 'node:crypto';
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { packWindow } from '../archive/window-codec.js';
import type { LayerScan } from '../archive/types.js';
import { ClipError } from '../util/errors.js';
import { assemble } from './assemble.js';
import * as F from './format.js';
import { windowDigest } from './window-digest.js';
import { OverlayMerger, type MergedInode, type MergedNode, type MergedTree } from './merge.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_IFCHR, S_IFBLK, type ImageMeta, type IndexedLayer } from './types.js';

/** What the index keeps of a layer scan besides its entries. */
export type LayerAccess = Pick<LayerScan, 'checkpoints' | 'chunkSize' | 'chunkDigests' | 'bounds'>;

/**
 * Builds an index one layer at a time, bottom first: each layer's entries are merged as it is added
 * and can be dropped by the caller afterwards; only checkpoints and chunk digests are kept.
 */
export class IndexBuilder {
  private readonly merger = new OverlayMerger();
  private readonly layers: IndexedLayer[] = [];
  private readonly access: LayerAccess[] = [];

  constructor(private readonly image: Omit<ImageMeta, 'layers'>) {}

  addLayer(layer: IndexedLayer, scan: LayerScan): void {
    if (scan.digest !== layer.digest || scan.diffId !== layer.diffId) {
      throw new ClipError('EDIGEST', `scan of layer ${this.layers.length} has digest ${scan.digest} and diff_id ${scan.diffId}, expected ${layer.diffId}`, { object: layer.digest });
    }
    if (this.layers.length >= F.NO_LAYER) throw new ClipError('EUNSUPPORTED', `more than ${F.NO_LAYER - 1} layers`, { object: this.image.reference });
    this.merger.applyLayer(scan, this.layers.length, layer.digest);
    this.layers.push(layer);
    this.access.push({ checkpoints: scan.checkpoints, chunkSize: scan.chunkSize, chunkDigests: scan.chunkDigests, bounds: scan.bounds });
  }

  /** The bytes of the index file. */
  build(): Buffer {
    return serializeIndex({ ...this.image, layers: this.layers }, this.access, this.merger.tree());
  }
}

/** Merge the layers and serialise everything: the bytes of an index file. */
export function buildIndex(meta: ImageMeta, scans: readonly LayerScan[]): Buffer {
  if (scans.length !== meta.layers.length) {
    throw new ClipError('EINVAL', `${scans.length} layer scans for ${meta.layers.length} layers`, { object: meta.reference });
  }
  const { layers, ...image } = meta;
  const builder = new IndexBuilder(image);
  scans.forEach((scan, i) => builder.addLayer(layers[i]!, scan));
  return builder.build();
}

/** Append-only byte heap with deduplication by key. */
class Heap {
  private readonly parts: Buffer[] = [];
  private readonly seen = new Map<string, number>();
  size = 0;

  add(key: string, bytes: Buffer): number {
    const known = this.seen.get(key);
    if (known !== undefined) return known;
    const off = this.size;
    this.parts.push(bytes);
    this.size += bytes.length;
    this.seen.set(key, off);
    return off;
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

/** The same for byte strings (one char per byte, see tar-path.ts): no Buffer per name until the end. */
class TextHeap {
  private readonly texts: string[] = [];
  private readonly seen = new Map<string, number>();
  private size = 0;

  add(text: string): number {
    const known = this.seen.get(text);
    if (known !== undefined) return known;
    const off = this.size;
    this.texts.push(text);
    this.size += text.length;
    this.seen.set(text, off);
    return off;
  }

  bytes(): Buffer {
    return Buffer.from(this.texts.join(''), 'latin1');
  }
}

function serializeXattrs(xattrs: Map<string, Buffer>): Buffer {
  const names = [...xattrs.keys()].sort();
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0]!.writeUInt16LE(names.length);
  for (const name of names) {
    const nameBytes = Buffer.from(name, 'utf8');
    const value = xattrs.get(name)!;
    const head = Buffer.alloc(6);
    head.writeUInt16LE(nameBytes.length, 0);
    head.writeUInt32LE(value.length, 2);
    parts.push(head, nameBytes, value);
  }
  return Buffer.concat(parts);
}

interface TreeLayout {
  nodes: MergedNode[];
  parentRecord: Int32Array;
  firstChild: Uint32Array;
  childCount: Uint32Array;
}

/** Names are byte strings (one char per byte, see tar-path.ts): comparing chars compares bytes. */
function byName(a: MergedNode, b: MergedNode): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Breadth-first records: every directory's children contiguous, sorted by name bytes. No object per entry. */
function layoutTree(tree: MergedTree): TreeLayout {
  const nodes: MergedNode[] = [tree.root];
  const parents: number[] = [-1];
  const first: number[] = [];
  const count: number[] = [];
  for (let r = 0; r < nodes.length; r++) {
    const node = nodes[r]!;
    first[r] = 0;
    count[r] = 0;
    if (!node.children) continue;
    const kids = [...node.children.values()].sort(byName);
    first[r] = nodes.length;
    count[r] = kids.length;
    for (const kid of kids) {
      nodes.push(kid);
      parents.push(r);
    }
  }
  return { nodes, parentRecord: Int32Array.from(parents), firstChild: Uint32Array.from(first), childCount: Uint32Array.from(count) };
}

export function serializeIndex(meta: ImageMeta, layers: readonly LayerAccess[], tree: MergedTree): Buffer {
  if (meta.layers.length >= F.NO_LAYER) throw new ClipError('EUNSUPPORTED', `${meta.layers.length} layers`, { object: meta.reference });
  const { nodes, parentRecord, firstChild, childCount } = layoutTree(tree);

  // Inode numbers in record order, root = 1, one per hardlink group; nlink counts the group. Only
  // inodes the merge saw hardlinked go through the maps: a map entry per entry costs ~100 B each.
  const links = new Map<MergedInode, number>();
  for (const n of nodes) if (n.inode.linked) links.set(n.inode, (links.get(n.inode) ?? 0) + 1);
  const inoOf = new Map<MergedInode, number>();
  const inoRecords: number[] = [0];
  const recordIno = new Uint32Array(nodes.length);
  nodes.forEach((n, r) => {
    let ino = n.inode.linked ? inoOf.get(n.inode) : undefined;
    if (ino === undefined) {
      ino = inoRecords.length;
      if (n.inode.linked) inoOf.set(n.inode, ino);
      inoRecords.push(r);
    }
    recordIno[r] = ino;
  });

  const strings = new TextHeap();
  const xattrs = new Heap();
  const entries = Buffer.alloc(nodes.length * F.ENTRY_RECORD_SIZE);
  const view = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
  nodes.forEach((node, r) => {
    const ind = node.inode;
    const at = r * F.ENTRY_RECORD_SIZE;
    const name = node.name;
    if (name.length > 0xffff) throw new ClipError('EUNSUPPORTED', `name of ${name.length} bytes`, { object: name });
    const type = ind.mode & S_IFMT;
    let nlink = ind.linked ? links.get(ind)! : 1;
    if (type === S_IFDIR) {
      nlink = 2;
      for (const c of node.children!.values()) if (c.children) nlink++;
    }
    view.setUint32(at + F.E_INO, recordIno[r]!, true);
    view.setUint32(at + F.E_PARENT, r === 0 ? 1 : recordIno[parentRecord[r]!]!, true);
    view.setUint32(at + F.E_MODE, ind.mode, true);
    view.setUint32(at + F.E_UID, ind.uid, true);
    view.setUint32(at + F.E_GID, ind.gid, true);
    view.setUint32(at + F.E_NLINK, nlink, true);
    view.setUint32(at + F.E_NSEC, ind.mtimeNsec, true);
    view.setUint32(at + F.E_NAME_OFF, strings.add(name), true);
    view.setUint16(at + F.E_NAME_LEN, name.length, true);
    view.setUint16(at + F.E_LAYER, type === S_IFREG && ind.layer >= 0 ? ind.layer : F.NO_LAYER, true);
    view.setFloat64(at + F.E_SIZE, ind.size, true);
    view.setFloat64(at + F.E_SEC, ind.mtimeSec, true);
    if (type === S_IFREG) {
      view.setFloat64(at + F.E_UNION, ind.dataOffset, true);
    } else if (type === S_IFDIR) {
      view.setUint32(at + F.E_UNION, firstChild[r]!, true);
      view.setUint32(at + F.E_UNION2, childCount[r]!, true);
    } else if (type === S_IFLNK) {
      view.setUint32(at + F.E_UNION, strings.add(ind.linkTarget), true);
      view.setUint32(at + F.E_UNION2, ind.linkTarget.length, true);
    } else if (type === S_IFCHR || type === S_IFBLK) {
      view.setUint32(at + F.E_UNION, ind.devMajor, true);
      view.setUint32(at + F.E_UNION2, ind.devMinor, true);
    }
    if (ind.xattrs.size > 0) {
      const set = serializeXattrs(ind.xattrs);
      view.setUint32(at + F.E_XATTR, xattrs.add(set.toString('latin1'), set) + 1, true);
    }
  });

  const inodes = Buffer.alloc(inoRecords.length * 4);
  inoRecords.forEach((r, ino) => inodes.writeUInt32LE(r, ino * 4));

  const layerTable = Buffer.alloc(layers.length * F.LAYER_RECORD_SIZE);
  const cpCount = layers.reduce((n, l) => n + l.checkpoints.length, 0);
  const checkpoints = Buffer.alloc(cpCount * F.CHECKPOINT_RECORD_SIZE);
  const windows: Buffer[] = [];
  const windowDigests: Buffer[] = [];
  let windowBytes = 0;
  let cpIndex = 0;
  let chunkIndex = 0;
  layers.forEach((layer, i) => {
    const name = meta.layers[i]?.digest ?? `#${i}`;
    if (layer.chunkDigests.length % F.DIGEST_SIZE !== 0) throw new ClipError('ECORRUPT', 'chunk digests are not 32 bytes each', { object: name });
    const lt = i * F.LAYER_RECORD_SIZE;
    layerTable.writeUInt32LE(cpIndex, lt + F.L_CP_FIRST);
    layerTable.writeUInt32LE(layer.checkpoints.length, lt + F.L_CP_COUNT);
    layerTable.writeUInt32LE(chunkIndex, lt + F.L_CHUNK_FIRST);
    layerTable.writeUInt32LE(layer.chunkDigests.length / F.DIGEST_SIZE, lt + F.L_CHUNK_COUNT);
    layerTable.writeUInt32LE(layer.chunkSize, lt + F.L_CHUNK_SIZE);
    chunkIndex += layer.chunkDigests.length / F.DIGEST_SIZE;
    for (const cp of layer.checkpoints) {
      const rawLength = cp.packed?.rawLength ?? cp.window.length;
      if (rawLength > 0xffff) throw new ClipError('ECORRUPT', `checkpoint window of ${rawLength} bytes`, { object: name });
      const packed = cp.packed ?? packWindow(cp.window);
      const at = cpIndex * F.CHECKPOINT_RECORD_SIZE;
      checkpoints.writeDoubleLE(cp.out, at + F.C_OUT);
      checkpoints.writeDoubleLE(cp.in, at + F.C_IN);
      checkpoints.writeDoubleLE(windowBytes, at + F.C_WIN_OFF);
      checkpoints.writeUInt32LE(packed.bytes.length, at + F.C_WIN_LEN);
      checkpoints.writeUInt16LE(rawLength, at + F.C_WIN_RAW);
      checkpoints.writeUInt8(cp.bits, at + F.C_BITS);
      // A scan kept before windows named their codec (scan-v1) holds deflated ones.
      checkpoints.writeUInt8(packed.codec === 'brotli' ? F.WindowCodec.Brotli : F.WindowCodec.Deflate, at + F.C_WIN_CODEC);
      windows.push(packed.bytes);
      windowDigests.push(windowDigest(packed.bytes));
      windowBytes += packed.bytes.length;
      cpIndex++;
    }
  });

  const metaJson = {
    reference: meta.reference,
    location: meta.location,
    manifestDigest: meta.manifestDigest,
    manifestMediaType: meta.manifestMediaType,
    platform: meta.platform,
    layers: meta.layers.map((l) => ({
      digest: l.digest, diffId: l.diffId, mediaType: l.mediaType, compression: l.compression,
      compressedSize: l.compressedSize, uncompressedSize: l.uncompressedSize,
    })),
  };

  const windowsBlob = Buffer.concat(windows, windowBytes);
  const head = Buffer.alloc(F.WINDOWS_HEAD_SIZE);
  createHash('sha256').update(windowsBlob).digest().copy(head, 0);
  head.writeDoubleLE(windowsBlob.length, F.DIGEST_SIZE);
  return assemble([
    [F.Section.Meta, Buffer.from(JSON.stringify(metaJson), 'utf8')],
    [F.Section.Config, meta.config],
    [F.Section.Layers, layerTable],
    [F.Section.Checkpoints, checkpoints],
    [F.Section.Windows, windowsBlob],
    [F.Section.Chunks, Buffer.concat(layers.map((l) => l.chunkDigests))],
    [F.Section.Entries, entries],
    [F.Section.Inodes, inodes],
    [F.Section.Strings, strings.bytes()],
    [F.Section.Xattrs, xattrs.bytes()],
    [F.Section.Bounds, boundsSection(layers)],
    [F.Section.WindowDigests, Buffer.concat([head, ...windowDigests])],
  ]);
}

/** u32 byte length per layer, then each layer's encoded block boundaries (none for a scan without). */
function boundsSection(layers: readonly LayerAccess[]): Buffer {
  const table = Buffer.alloc(layers.length * 4);
  layers.forEach((l, i) => table.writeUInt32LE(l.bounds?.length ?? 0, i * 4));
  return Buffer.concat([table, ...layers.map((l) => l.bounds ?? Buffer.alloc(0))]);
}

/** Temporaries of writeIndexFile: "<name>.tmp-<pid>-<ms>". */
const TEMP_NAME = /\.tmp-\d+-\d+$/;
/** A temporary this old is a writer's that died (kill -9) between open and rename: writing takes seconds. */
export const STALE_TEMP_MS = 10 * 60 * 1000;

/** Write index bytes so that a reader never sees a partial file: temporary file, fsync, rename. */
export async function writeIndexFile(path: string, bytes: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
}

/**
 * Remove the temporaries writeIndexFile left in `dir` when killed, those last modified over
 * `maxAgeMs` ago (a live writer's file is younger). Only regular files with the temporary's name
 * pattern are touched. Returns how many were removed.
 */
export async function removeStaleTemps(dir: string, maxAgeMs = STALE_TEMP_MS, now = Date.now()): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    if (!TEMP_NAME.test(name)) continue;
    const file = join(dir, name);
    try {
      const st = await lstat(file);
      if (!st.isFile() || now - st.mtimeMs < maxAgeMs) continue;
      await unlink(file);
      removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // another process removed it first
    }
  }
  return removed;
}
