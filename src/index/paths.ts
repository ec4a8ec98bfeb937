/** Path rules the merge relies on: entries stay under the root, whiteout names are recognised. */
import { ClipError } from '../util/errors.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
/** aufs' own metadata names (".wh..wh.plnk", ".wh..wh.aufs"): never part of the image's tree. */
const AUFS_META_PREFIX = '.wh..wh.';

/**
 * Split a normalised entry path into its components, refusing anything that could leave the root.
 * The archive module normalises already; this is the index's own line of defence.
 */
export function splitEntryPath(path: string, object: string): string[] {
  if (path === '') return [];
  if (path.startsWith('/')) throw new ClipError('EUNSAFE', `absolute path "${path}" in layer`, { object });
  if (path.includes('\0')) throw new ClipError('EUNSAFE', `path with a NUL byte in layer`, { object });
  const parts = path.split('/');
  for (const part of parts) {
    if (part === '..') throw new ClipError('EUNSAFE', `path "${path}" escapes the root`, { object });
    if (part === '' || part === '.') throw new ClipError('EUNSAFE', `path "${path}" is not normalised`, { object });
  }
  return parts;
}

export type WhiteoutKind = 'none' | 'whiteout' | 'opaque' | 'aufs-meta';

export function whiteoutKind(name: string): WhiteoutKind {
  if (!name.startsWith(WHITEOUT_PREFIX)) return 'none';
  if (name === OPAQUE_MARKER) return 'opaque';
  if (name.startsWith(AUFS_META_PREFIX)) return 'aufs-meta';
  return 'whiteout';
}
