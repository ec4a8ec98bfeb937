/** `clip cat IMAGE|INDEX PATH`: a file's bytes on stdout, read lazily through the storage read path. */
import { once } from 'node:events';
import type { ImageIndex } from '../../index/reader.js';
import type { Storage } from '../../storage/storage.js';
import type { ResumableLayer } from '../../storage/checkpoint-source.js';
import { ClipError } from '../../util/errors.js';
import { openImageStorage } from '../../mount/open-image.js';
import { openForCommand } from '../image-arg.js';
import { storageSettingsOf, type ReadCommandOptions } from '../read-options.js';

/** How long a short-lived command waits for its chunks to reach the shared cache before exiting. */
export const FLUSH_MS = 2000;

/** The regular file at `path`, symlinks followed inside the image. */
export function fileAt(index: ImageIndex, path: string): { ino: number; layer: number; offset: number; size: number } {
  const ino = index.resolvePathOrThrow(path, { followLast: true });
  const loc = index.dataLocation(ino);
  if (!loc) {
    const type = index.type(ino);
    throw new ClipError(type === 'dir' ? 'EINVAL' : 'EUNSUPPORTED', `is a ${type === 'dir' ? 'directory' : type}, not a regular file`, { object: path });
  }
  return { ino, ...loc };
}

/**
 * Write a file's bytes to `out`, streamed (at most a few chunks in memory). A reader that goes away
 * (EPIPE, as with `clip cat ... | head`) ends the copy quietly; returns the bytes written.
 */
export async function catFile(index: ImageIndex, layers: ResumableLayer[], storage: Storage, path: string, out: NodeJS.WritableStream): Promise<number> {
  const file = fileAt(index, path);
  if (file.size === 0) return 0;
  let closed: NodeJS.ErrnoException | undefined;
  // Stays attached: an EPIPE can surface after the last write.
  out.on('error', (err: NodeJS.ErrnoException) => {
    closed ??= err;
  });
  let written = 0;
  try {
    for await (const piece of storage.stream(layers[file.layer]!, file.offset, file.size)) {
      if (closed) break;
      written += (piece as Buffer).length;
      if (!out.write(piece as Buffer)) await once(out, 'drain');
    }
  } catch (err) {
    if (!closed) throw err;
  }
  if (closed) {
    if (closed.code === 'EPIPE') return written;
    throw closed;
  }
  if (written !== file.size) throw new ClipError('ECORRUPT', `read ${written} bytes of ${file.size}`, { object: path });
  return written;
}

export async function catCommand(image: string, path: string, opts: ReadCommandOptions): Promise<void> {
  const settings = storageSettingsOf(opts); // bad values fail before any indexing
  const { img, logger } = await openForCommand(image, opts);
  try {
    fileAt(img.index, path); // a missing path or a directory fails before any storage is opened
    const storage = await openImageStorage(img, { ...settings, logger });
    try {
      await catFile(img.index, img.layers, storage, path, process.stdout);
    } finally {
      await storage.close({ flushMs: FLUSH_MS });
    }
  } finally {
    await img.close();
  }
}
