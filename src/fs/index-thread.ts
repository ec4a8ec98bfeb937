/**
 * Loaded in the FUSE reader thread (see src/fuse/sync-answers.ts): the image's index over the same
 * shared bytes as the main thread's, answering names, attributes, listings and xattrs there.
 */
import type { SyncFilesystem } from '../fuse/index.js';
import { ImageIndex } from '../index/reader.js';
import { IndexAnswers } from './index-answers.js';

export interface IndexThreadData {
  /** The index file's bytes, shared with the main thread (not copied). */
  index: SharedArrayBuffer;
  file: string;
  timeoutSeconds: number;
}

export function createSyncFilesystem(data: IndexThreadData): SyncFilesystem {
  return new IndexAnswers(new ImageIndex(Buffer.from(data.index), data.file), data.timeoutSeconds);
}
