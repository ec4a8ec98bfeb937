/**
 * LayerRecords over a loaded index file: chunk digests and checkpoints are read from the index
 * buffer on demand (no copies), and each layer can say which compressed range to fetch. A
 * checkpoint whose window the index left out (version 4, published) comes with `loadWindow`:
 * the window is fetched when a fetch starts there (checkpoint-windows.ts), beside its range.
 */
import { NO_WINDOW } from '../archive/types.js';
import type { ImageIndex } from '../index/reader.js';
import type { CompressedRange, ResumableLayer } from './checkpoint-source.js';
import { indexWindows } from './checkpoint-windows.js';

export function indexLayers(index: ImageIndex): ResumableLayer[] {
  return index.layers.map((info, n) => {
    const cpCount = index.checkpointCount(n);
    return {
      diffId: info.diffId,
      digest: info.digest,
      compression: info.compression,
      compressedSize: info.compressedSize,
      uncompressedSize: info.uncompressedSize,
      chunkSize: index.chunkSize(n),
      chunkDigest: (i: number) => index.chunkDigest(n, i),
      boundAtOrAfter: index.boundCount(n) > 0 ? (out: number) => index.boundAtOrAfter(n, out) : undefined,
      compressedRange(start: number, end: number): CompressedRange {
        const k = index.checkpointIndexBefore(n, start);
        const lazy = index.needsWindow(n, k);
        const checkpoint = lazy ? { ...index.checkpointPosition(n, k), window: NO_WINDOW } : index.checkpoint(n, k);
        // Every block that ends before a checkpoint's `out` ends before its `in`.
        let stop = info.compressedSize;
        let endOut = info.uncompressedSize;
        const j = index.checkpointIndexBefore(n, end);
        for (const c of [j, j + 1]) {
          if (c > k && c < cpCount) {
            const cp = index.checkpointPosition(n, c); // the end needs no window
            if (cp.out >= end) {
              stop = cp.in;
              endOut = cp.out;
              break;
            }
          }
        }
        return {
          checkpoint, start: checkpoint.bits ? checkpoint.in - 1 : checkpoint.in, end: stop, endOut,
          ...(lazy ? { loadWindow: (tiers) => indexWindows(index).checkpoint(n, k, tiers) } : {}),
        };
      },
    };
  });
}
