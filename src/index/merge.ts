/**
 * Overlay merge: apply layers bottom to top as `umoci unpack` does, producing the image's root
 * filesystem as an in-memory tree. Rules checked against umoci 0.4.7 on this machine:
 * - entries are applied in stream order; a later entry replaces the node at its path (a directory
 *   over a directory only updates metadata and keeps the children);
 * - `.wh.NAME` and `.wh..wh..opq` act on lower layers only: nodes the same layer created survive them,
 *   whatever their order in the stream, and so do lower directories holding such nodes;
 * - missing parents are created as 0755 root:root directories (umoci: mtime of the unpack; here 0);
 *   a whiteout never creates parents;
 * - parent components that are symlinks are followed inside the root (lib -> usr/lib);
 * - a hardlink shares its target's inode and ignores its own header metadata; a target that does not
 *   exist when the link is applied is an error (umoci fails the unpack the same way).
 */
import { shownPath } from '../archive/tar-path.js';
import type { LayerScan, TarEntry } from '../archive/types.js';
import { ClipError } from '../util/errors.js';
import { splitEntryPath, whiteoutKind } from './paths.js';
import { S_IFDIR, S_IFLNK, S_IFMT, typeBits } from './types.js';

export interface MergedInode {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  devMajor: number;
  devMinor: number;
  linkTarget: string;
  xattrs: Map<string, Buffer>;
  /** Layer holding the content (files), -1 for implied directories. */
  layer: number;
  dataOffset: number;
  /** Set once a hardlink names this inode: it may have several names. */
  linked?: boolean;
}

export interface MergedNode {
  name: string;
  inode: MergedInode;
  parent: MergedNode | null;
  /** Children by name for directories, null for everything else. */
  children: Map<string, MergedNode> | null;
  /** The layer that last created or replaced this node: the merge's "upper" test. */
  layer: number;
}

export interface MergedTree {
  root: MergedNode;
}

const MAX_SYMLINK_HOPS = 40;
const NO_XATTRS: Map<string, Buffer> = new Map();

function defaultDir(layer: number): MergedInode {
  return {
    mode: S_IFDIR | 0o755, uid: 0, gid: 0, size: 0, mtimeSec: 0, mtimeNsec: 0,
    devMajor: 0, devMinor: 0, linkTarget: '', xattrs: NO_XATTRS, layer, dataOffset: 0,
  };
}

function inodeOf(entry: TarEntry, layer: number): MergedInode {
  if (entry.type === 'hardlink') throw new Error('hardlinks share an inode');
  return {
    mode: typeBits(entry.type) | (entry.mode & 0o7777),
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === 'file' ? entry.size : entry.type === 'symlink' ? Buffer.byteLength(entry.linkTarget, 'latin1') : 0,
    mtimeSec: entry.mtimeSec,
    mtimeNsec: entry.mtimeNsec,
    devMajor: entry.type === 'char' || entry.type === 'block' ? entry.devMajor : 0,
    devMinor: entry.type === 'char' || entry.type === 'block' ? entry.devMinor : 0,
    linkTarget: entry.type === 'symlink' ? entry.linkTarget : '',
    xattrs: entry.xattrs.size > 0 ? entry.xattrs : NO_XATTRS,
    layer,
    dataOffset: entry.type === 'file' ? entry.dataOffset : 0,
  };
}

function isDir(node: MergedNode): boolean {
  return node.children !== null;
}

/**
 * Delete from `dir` everything older than `layer`, keeping nodes `layer` created and the lower
 * directories on the way to them. Returns whether anything of `layer` remains below `dir`.
 */
function pruneLower(dir: MergedNode, layer: number): boolean {
  let kept = false;
  for (const [name, child] of dir.children!) {
    let keep = child.layer === layer;
    if (child.children !== null) keep = pruneLower(child, layer) || keep;
    if (keep) kept = true;
    else dir.children!.delete(name);
  }
  return kept;
}

/** Builds the merged tree one layer at a time. */
export class OverlayMerger {
  readonly root: MergedNode = { name: '', inode: defaultDir(-1), parent: null, children: new Map(), layer: -1 };
  private layer = -1;
  private object = '';

  /** Apply one layer on top of what is there. `name` identifies the layer in errors (its digest). */
  applyLayer(scan: Pick<LayerScan, 'entries'>, layerIndex: number, name: string): void {
    this.layer = layerIndex;
    for (const entry of scan.entries) {
      this.object = `layer ${name}: ${shownPath(entry.path)}`;
      this.applyEntry(entry);
    }
  }

  tree(): MergedTree {
    return { root: this.root };
  }

  private applyEntry(entry: TarEntry): void {
    const parts = splitEntryPath(entry.path, this.object);
    if (parts.length === 0) {
      if (entry.type !== 'dir') throw new ClipError('ECORRUPT', `the root entry is a ${entry.type}, not a directory`, { object: this.object });
      this.root.inode = inodeOf(entry, this.layer);
      this.root.layer = this.layer;
      return;
    }
    const name = parts[parts.length - 1]!;
    const parentParts = parts.slice(0, -1);
    const kind = whiteoutKind(name);
    if (kind !== 'none') {
      const dir = this.resolveDir(this.root, parentParts, false, { hops: 0 });
      if (!dir) return;
      if (kind === 'opaque') pruneLower(dir, this.layer);
      else if (kind === 'whiteout') this.whiteout(dir, name.slice('.wh.'.length));
      return;
    }
    if (entry.type === 'hardlink') splitEntryPath(entry.linkTarget, `${this.object} (hardlink target)`);
    const dir = this.resolveDir(this.root, parentParts, true, { hops: 0 })!;
    const existing = dir.children!.get(name);

    if (entry.type === 'hardlink') {
      const target = this.resolveNode(entry.linkTarget);
      if (!target || target === existing) {
        throw new ClipError('ECORRUPT', `hardlink target "${shownPath(entry.linkTarget)}" does not exist`, { object: this.object });
      }
      if (isDir(target)) throw new ClipError('ECORRUPT', `hardlink to directory "${shownPath(entry.linkTarget)}"`, { object: this.object });
      if (existing) dir.children!.delete(name);
      target.inode.linked = true;
      dir.children!.set(name, { name, inode: target.inode, parent: dir, children: null, layer: this.layer });
      return;
    }
    if (entry.type === 'dir' && existing && isDir(existing)) {
      existing.inode = inodeOf(entry, this.layer);
      existing.layer = this.layer;
      return;
    }
    if (existing) dir.children!.delete(name);
    dir.children!.set(name, {
      name, inode: inodeOf(entry, this.layer), parent: dir, children: entry.type === 'dir' ? new Map() : null, layer: this.layer,
    });
  }

  private whiteout(dir: MergedNode, name: string): void {
    const target = dir.children!.get(name);
    if (!target || target.layer === this.layer) return;
    if (target.children !== null && pruneLower(target, this.layer)) return;
    dir.children!.delete(name);
  }

  /** The node at a normalised path, parents' symlinks followed, the last component not. */
  private resolveNode(path: string): MergedNode | undefined {
    const parts = path.split('/');
    const name = parts.pop()!;
    const dir = this.resolveDir(this.root, parts, false, { hops: 0 });
    return dir?.children!.get(name);
  }

  /**
   * Walk `parts` from `start` to a directory, following symlinks inside the root (".." stops at
   * the root, absolute targets start from it). With `create`, missing directories are made.
   */
  private resolveDir(start: MergedNode, parts: readonly string[], create: boolean, state: { hops: number }): MergedNode | undefined {
    let cur = start;
    for (const part of parts) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        cur = cur.parent ?? this.root;
        continue;
      }
      let child = cur.children!.get(part);
      if (!child) {
        if (!create) return undefined;
        child = { name: part, inode: defaultDir(-1), parent: cur, children: new Map(), layer: this.layer };
        cur.children!.set(part, child);
      }
      if ((child.inode.mode & S_IFMT) === S_IFLNK) {
        if (++state.hops > MAX_SYMLINK_HOPS) {
          throw new ClipError('ECORRUPT', 'too many levels of symbolic links in a parent directory', { object: this.object });
        }
        const target = child.inode.linkTarget;
        const next = this.resolveDir(target.startsWith('/') ? this.root : cur, target.split('/'), create, state);
        if (!next) return undefined;
        child = next;
      } else if (!isDir(child)) {
        if (!create) return undefined;
        throw new ClipError('ECORRUPT', `parent "${part}" is not a directory`, { object: this.object });
      }
      cur = child;
    }
    return cur;
  }
}

/** Merge layers bottom to top. `names[i]` names layer i in errors (its digest). */
export function mergeLayers(scans: ReadonlyArray<Pick<LayerScan, 'entries'>>, names: readonly string[]): MergedTree {
  const merger = new OverlayMerger();
  scans.forEach((scan, i) => merger.applyLayer(scan, i, names[i] ?? `#${i}`));
  return merger.tree();
}
