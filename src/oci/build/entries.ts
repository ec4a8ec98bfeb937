/**
 * A layer described as an ordered list of entries, written to tar in exactly this order
 * (the order matters to overlay rules: a whiteout and the entries it hides, an opaque marker and
 * the same layer's entries kept).
 */
import type { Readable } from 'node:stream';

/** Where a regular file's bytes come from. Never a whole big file in memory: use `path` or `generate`. */
export type FileContent =
  | Buffer
  | string
  | { path: string }
  /** Deterministic bytes produced on demand (see content.ts); `size` must be exact. */
  | { size: number; generate: () => Readable };

/** Seconds since the epoch plus nanoseconds: tar's ustar header holds seconds, PAX the rest. */
export interface Mtime {
  sec: number;
  nsec?: number;
}

export interface EntryMeta {
  /** Permission bits, setuid/setgid/sticky included (0o7777). Defaults: 0o644 files, 0o755 dirs. */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: Mtime;
  /** Written as PAX SCHILY.xattr.<name> records; values are raw bytes. */
  xattrs?: Record<string, Buffer | string>;
}

export type LayerEntry = EntryMeta &
  (
    | { type: 'file'; path: string; content: FileContent }
    | { type: 'dir'; path: string }
    | { type: 'symlink'; path: string; target: string }
    /** `target` is the path (in the merged tree) of the entry this one links to. */
    | { type: 'hardlink'; path: string; target: string }
    | { type: 'fifo'; path: string }
    | { type: 'char' | 'block'; path: string; major: number; minor: number }
  );

/** A whiteout entry deleting `path` (and its subtree) from the layers below. */
export function whiteout(path: string, meta: EntryMeta = {}): LayerEntry {
  const slash = path.lastIndexOf('/');
  const dir = slash < 0 ? '' : path.slice(0, slash + 1);
  return { ...meta, type: 'file', path: `${dir}.wh.${path.slice(slash + 1)}`, content: Buffer.alloc(0) };
}

/** The marker that makes `dir` opaque: nothing from lower layers shows through it. */
export function opaque(dir: string, meta: EntryMeta = {}): LayerEntry {
  return { ...meta, type: 'file', path: `${dir.replace(/\/+$/, '')}/.wh..wh..opq`, content: Buffer.alloc(0) };
}
