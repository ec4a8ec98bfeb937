/**
 * The index's view of an image in the shape test/support/tools.ts snapshots a real directory tree
 * (lstat, readlink, xattrs, sha256 of contents), and a comparison that lists every difference.
 */
import { createHash, type Hash } from 'node:crypto';
import type { TreeNode } from '../support/tools.js';
import { shownBytes } from '../../src/archive/tar-path.js';
import type { ImageIndex } from '../../src/index/reader.js';
import { entryTypeOf, S_IFMT } from '../../src/index/types.js';

/**
 * Every path of the index (relative, as snapshotTree has them), with inode numbers from the index.
 * `hashes` maps inode -> sha256 hex of the file's content when it is known.
 */
export function indexTree(index: ImageIndex, hashes?: Map<number, string>): Map<string, TreeNode> {
  const out = new Map<string, TreeNode>();
  for (const { path, ino } of index.walk()) {
    if (path === '/') continue;
    const a = index.getattr(ino);
    const type = entryTypeOf(a.mode & S_IFMT);
    const node: TreeNode = {
      type, mode: a.mode & 0o7777, uid: a.uid, gid: a.gid, size: type === 'file' ? a.size : 0,
      mtimeNs: (BigInt(a.mtimeSec) * 1_000_000_000n + BigInt(a.mtimeNsec)).toString(),
      ino, nlink: a.nlink, xattrs: {},
    };
    if (type === 'symlink') node.linkTarget = shownBytes(index.readlink(ino));
    if (type === 'char' || type === 'block') {
      node.devMajor = a.rdevMajor;
      node.devMinor = a.rdevMinor;
    }
    const sha = hashes?.get(ino);
    if (sha !== undefined) node.sha256 = sha;
    for (const name of index.listxattr(ino)) node.xattrs[name] = index.getxattr(ino, name)!.toString('hex');
    out.set(path.slice(1), node);
  }
  return out;
}

/**
 * sha256 of every regular file, computed from the layers' uncompressed streams and the index's
 * data locations alone (one pass per layer). `openLayer(i)` yields layer i's uncompressed tar.
 */
export async function contentHashes(index: ImageIndex, openLayer: (layer: number) => AsyncIterable<Buffer>): Promise<Map<number, string>> {
  const byLayer = new Map<number, Array<{ ino: number; offset: number; size: number }>>();
  const hashes = new Map<number, string>();
  for (const { ino } of index.walk()) {
    const loc = index.dataLocation(ino);
    if (!loc || hashes.has(ino)) continue;
    if (loc.size === 0) {
      hashes.set(ino, createHash('sha256').digest('hex'));
      continue;
    }
    const list = byLayer.get(loc.layer) ?? [];
    if (!list.some((r) => r.ino === ino)) list.push({ ino, offset: loc.offset, size: loc.size });
    byLayer.set(loc.layer, list);
  }
  for (const [layer, ranges] of byLayer) {
    ranges.sort((x, y) => x.offset - y.offset);
    let pos = 0;
    let r = 0;
    let active: Hash | undefined;
    for await (const chunk of openLayer(layer)) {
      let at = 0;
      while (at < chunk.length && r < ranges.length) {
        const range = ranges[r]!;
        const abs = pos + at;
        if (abs < range.offset) {
          at = Math.min(chunk.length, range.offset - pos);
          continue;
        }
        active ??= createHash('sha256');
        const end = Math.min(chunk.length, range.offset + range.size - pos);
        active.update(chunk.subarray(at, end));
        at = end;
        if (pos + at === range.offset + range.size) {
          hashes.set(range.ino, active.digest('hex'));
          active = undefined;
          r++;
        }
      }
      pos += chunk.length;
    }
    if (r < ranges.length) throw new Error(`layer ${layer} ended at ${pos} before file data at ${ranges[r]!.offset}`);
  }
  return hashes;
}

export interface CompareOptions {
  /**
   * Whether directory mtimes are compared. umoci stamps directories it creates implicitly, and
   * lower directories a later layer changed, with the time of the unpack; the index has the tar's.
   */
  dirMtimes?: boolean;
  /** Whether file content hashes are compared (both sides must have them). */
  contents?: boolean;
}

function groupsOf(tree: Map<string, TreeNode>): string[] {
  const byIno = new Map<number, string[]>();
  for (const [path, node] of tree) if (node.type !== 'dir') byIno.set(node.ino, [...(byIno.get(node.ino) ?? []), path]);
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort().join(' = ')).sort();
}

/** Every difference between an expected tree (a real unpack) and the index's view, one line each. */
export function diffTrees(expected: Map<string, TreeNode>, actual: Map<string, TreeNode>, opts: CompareOptions = {}): string[] {
  const diffs: string[] = [];
  for (const path of expected.keys()) if (!actual.has(path)) diffs.push(`${path}: missing from the index`);
  for (const path of actual.keys()) if (!expected.has(path)) diffs.push(`${path}: in the index only`);
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (!got) continue;
    const fields: Array<keyof TreeNode> = ['type', 'mode', 'uid', 'gid', 'size', 'linkTarget', 'devMajor', 'devMinor', 'nlink'];
    if (want.type !== 'dir' || opts.dirMtimes) fields.push('mtimeNs');
    if (opts.contents && want.type === 'file') fields.push('sha256');
    for (const f of fields) {
      if (JSON.stringify(want[f]) !== JSON.stringify(got[f])) diffs.push(`${path}: ${f} ${JSON.stringify(got[f])}, expected ${JSON.stringify(want[f])}`);
    }
    if (JSON.stringify(want.xattrs) !== JSON.stringify(got.xattrs)) {
      diffs.push(`${path}: xattrs ${JSON.stringify(got.xattrs)}, expected ${JSON.stringify(want.xattrs)}`);
    }
  }
  const wantGroups = groupsOf(expected).join('\n');
  const gotGroups = groupsOf(actual).join('\n');
  if (wantGroups !== gotGroups) diffs.push(`hardlink groups:\n${gotGroups}\nexpected:\n${wantGroups}`);
  return diffs;
}
