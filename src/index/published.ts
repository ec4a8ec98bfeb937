/**
 * An index's published form (format 4): the same index without its checkpoint windows, which are
 * published as a blob of their own and fetched by range (docs/index-artifact.md). Apart from the
 * writer, so that what names an index by its bytes (profiles, condemnations) does not load it.
 */
import { createHash } from 'node:crypto';
import { ClipError } from '../util/errors.js';
import { assemble } from './assemble.js';
import * as F from './format.js';
import { formatVersion, readSections } from './sections.js';

/**
 * The index as it is published: a version 4 index without its windows (they are the same index
 * either way, so what names an index by its bytes, a profile or a condemnation, uses this form);
 * any other index as it is.
 */
export function publishedForm(bytes: Buffer, file = 'index'): Buffer {
  if (bytes.length < F.HEADER_SIZE || !bytes.subarray(0, F.MAGIC.length).equals(F.MAGIC) || formatVersion(bytes) < 4) return bytes;
  try {
    return splitWindows(bytes, file).eager;
  } catch {
    return bytes; // not a whole index: named by its bytes as they are
  }
}

/**
 * A version 4 index split for publishing: `eager`, the same index with an empty Windows section
 * (what a mount downloads whole), and `windows`, the windows blob its checkpoints point into
 * (fetched by range, window by window). An index whose windows are left out already gives
 * itself and no windows.
 */
export function splitWindows(bytes: Buffer, file = 'index'): { eager: Buffer; windows: Buffer | undefined } {
  const sections = readSections(bytes, file);
  if (formatVersion(bytes) < 4) throw new ClipError('EUNSUPPORTED', `index format version ${formatVersion(bytes)} keeps its windows in the file: re-create it with "clip index"`, { object: file });
  const win = sections.get(F.Section.Windows)!;
  if (win.length === 0) return { eager: bytes, windows: undefined };
  const windows = bytes.subarray(win.at, win.at + win.length);
  const head = sections.get(F.Section.WindowDigests);
  if (!head || !createHash('sha256').update(windows).digest().equals(bytes.subarray(head.at, head.at + F.DIGEST_SIZE))) {
    throw new ClipError('ECORRUPT', 'index file is inconsistent: its windows are not the blob it names', { object: file });
  }
  const parts: Array<[F.SectionId, Buffer]> = [];
  for (const [id, r] of sections) parts.push([id as F.SectionId, id === F.Section.Windows ? Buffer.alloc(0) : bytes.subarray(r.at, r.at + r.length)]);
  return { eager: assemble(parts), windows };
}
