import { createHash, type Hash } from 'node:crypto';

/** sha256 of every `chunkSize` piece of a stream, 32 bytes each, concatenated. */
export class ChunkDigester {
  private readonly chunkSize: number;
  private hash: Hash | null = null;
  private fill = 0;
  private readonly digests: Buffer[] = [];

  constructor(chunkSize: number) {
    this.chunkSize = chunkSize;
  }

  update(data: Uint8Array): void {
    let pos = 0;
    while (pos < data.length) {
      this.hash ??= createHash('sha256');
      const n = Math.min(this.chunkSize - this.fill, data.length - pos);
      this.hash.update(pos === 0 && n === data.length ? data : data.subarray(pos, pos + n));
      this.fill += n;
      pos += n;
      if (this.fill === this.chunkSize) {
        this.digests.push(this.hash.digest());
        this.hash = null;
        this.fill = 0;
      }
    }
  }

  /** The concatenated digests, including a final short chunk. */
  finish(): Buffer {
    if (this.hash) this.digests.push(this.hash.digest());
    this.hash = null;
    return Buffer.concat(this.digests);
  }
}
