/**
 * LayerRecords over a loaded index file: chunk digests and checkpoints are read from the index
 * buffer on demand (no copies), and each layer can say which compressed range to fetch.
 */
import type { ImageIndex } from '../index/reader.js';
import type { CompressedRange, ResumableLayer } from './checkpoint-source.js';

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
        const checkpoint = index.checkpoint(n, k);
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
        return { checkpoint, start: checkpoint.bits ? checkpoint.in - 1 : checkpoint.in, end: stop, endOut };
      },
    };
  });
}
