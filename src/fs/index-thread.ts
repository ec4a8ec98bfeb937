/**
 * Loaded in the FUSE reader threads (see src/fuse/sync-answers.ts): the image's index over the same
 * shared bytes as the main thread's, answering names, attributes, listings and xattrs there, and
 * READs of chunks already verified in the disk cache (read-thread.ts).
 */
import type { SyncFilesystem } from '../fuse/index.js';
import { CHECKED_IN_PROCESS, ImageIndex } from '../index/reader.js';
import { IndexAnswers } from './index-answers.js';
import { ThreadReads, type ThreadReadsData } from './read-thread.js';

export interface IndexThreadData {
  /** The index file's bytes, shared with the main thread (not copied). */
  index: SharedArrayBuffer;
  file: string;
  timeoutSeconds: number;
  /** READs of verified cached chunks answered in the thread too (absent: the main thread reads). */
  reads?: ThreadReadsData;
}

export function createSyncFilesystem(data: IndexThreadData): SyncFilesystem {
  // The main thread checked these bytes whole before sharing them.
  const index = new ImageIndex(Buffer.from(data.index), data.file, CHECKED_IN_PROCESS);
  const answers: SyncFilesystem = new IndexAnswers(index, data.timeoutSeconds);
  // The handle is the inode and the content never changes: an open needs no answer from the server.
  answers.zeroMessageOpen = true;
  if (!data.reads) return answers;
  const reads = new ThreadReads(index, data.reads);
  answers.read = (ino, _fh, offset, size, out) => reads.read(ino, offset, size, out);
  answers.readRange = (ino, offset, size) => reads.readRange(ino, offset, size);
  answers.afterRead = () => reads.afterRead();
  answers.close = () => reads.close();
  return answers;
}
