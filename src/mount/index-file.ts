/** Whether a command's IMAGE|INDEX argument names an index file: its magic alone, nothing loaded. */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { MAGIC } from '../index/format.js';

/**
 * 'index' for a regular file that starts with the index magic, 'other-file' for any other regular
 * file, 'special' for a FIFO, socket or device (never an index, and reading one could block
 * forever), 'none' when there is no file at that path or a directory (then it is an image reference).
 */
export async function indexFileKind(file: string): Promise<'index' | 'other-file' | 'special' | 'none'> {
  let fh;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return 'none';
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) return 'none';
    if (!st.isFile()) return 'special';
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(MAGIC) ? 'index' : 'other-file';
  } finally {
    await fh.close();
  }
}
