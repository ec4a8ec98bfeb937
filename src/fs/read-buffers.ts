/**
 * Buffers for READ replies, reused: a READ is filled in place and its buffer comes back once the
 * reply has been written, so a warm read allocates nothing and the GC sees no 1 MiB garbage per READ.
 * Only a few free buffers are kept, so an idle mount holds little memory.
 */
/**
 * Free buffers by size, shared by every pool of the process: the node's server has one pool per
 * mount, and 20 mounts each keeping 8 MiB would hold 160 MiB for nothing.
 */
const freeBySize = new Map<number, Buffer[]>();

/** Let every pool's free buffers go (the node's server, gone idle, before it collects garbage). */
export function releaseFreeReadBuffers(): void {
  for (const free of freeBySize.values()) free.length = 0;
}

export class ReadBuffers {
  private readonly free: Buffer[];
  /** Buffers handed out, by their memory: a reply may come back as a view of its buffer. */
  private readonly lent = new Map<ArrayBufferLike, Buffer>();

  constructor(
    /** Size of each pooled buffer; larger requests get a buffer of their own. */
    readonly size: number = 1024 * 1024,
    /**
     * How many free buffers to keep in the process, for pools of this size: about as many as READs
     * can be in flight at once (32 readers), so a busy server does not allocate one per READ; an
     * idle server lets them all go (releaseFreeReadBuffers).
     */
    readonly keep: number = 32,
  ) {
    let free = freeBySize.get(size);
    if (!free) freeBySize.set(size, (free = []));
    this.free = free;
  }

  /** A buffer of exactly `n` bytes (contents undefined). */
  take(n: number): Buffer {
    if (n > this.size) return Buffer.allocUnsafeSlow(n);
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    this.lent.set(buf.buffer, buf);
    return buf.subarray(0, n);
  }

  /** Give back what take() returned, or any view of it; anything else is ignored. */
  give(data: Uint8Array): void {
    const buf = this.lent.get(data.buffer);
    if (!buf) return;
    this.lent.delete(data.buffer);
    if (this.free.length < this.keep) this.free.push(buf);
  }

  /** Buffers lent and not yet given back (for tests). */
  get outstanding(): number {
    return this.lent.size;
  }
}
