/**
 * Checkpoint windows as an index stores them (index format 2): brotli. A window is 32 KiB of
 * whatever the layer held, mostly zeroed (sparse-window.ts); brotli keeps it smaller than
 * deflate -9 (docs/index-artifact.md). Packing is done once per checkpoint, at scan time in the
 * scan workers (a few ms a window at quality 9).
 */
import { brotliCompressSync, constants } from 'node:zlib';
import type { PackedWindow } from './types.js';

export function packWindow(window: Buffer): PackedWindow {
  if (window.length === 0) return { bytes: Buffer.alloc(0), rawLength: 0, codec: 'brotli' };
  const bytes = brotliCompressSync(window, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 9, // 11 saves ~1 % of sparse windows for 2.5x the indexing time
      [constants.BROTLI_PARAM_LGWIN]: 16, // the window is 32 KiB: a larger brotli window buys nothing
      [constants.BROTLI_PARAM_SIZE_HINT]: window.length,
    },
  });
  return { bytes, rawLength: window.length, codec: 'brotli' };
}
