/** Whether a command's IMAGE|INDEX argument names an index file: its magic alone, nothing loaded. */
import { open } from 'node:fs/promises';
import { MAGIC } from '../index/format.js';

/**
 * 'index' for a regular file that starts with the index magic, 'other-file' for any other regular
 * file, 'none' when there is no regular file at that path (then it is an image reference).
 */
export async function indexFileKind(file: string): Promise<'index' | 'other-file' | 'none'> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return 'none';
  }
  try {
    if (!(await fh.stat()).isFile()) return 'none';
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(MAGIC) ? 'index' : 'other-file';
  } finally {
    await fh.close();
  }
}
