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

/** A READ of at most this part of the pool's size gets a buffer of that part (small random reads). */
const SMALL_PART = 8;

export class ReadBuffers {
  /** Free buffers of `size` bytes, and of `size / SMALL_PART` bytes for small READs. */
  private readonly free: Buffer[];
  private readonly freeSmall: Buffer[];
  private readonly small: number;
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
    this.free = freeList(size);
    // 32 random readers of 4-128 KiB held 32 MiB of 1 MiB buffers (bench/server/RESULTS.md); small
    // READs now take 128 KiB ones. A 1 MiB READ (sequential, readahead) still takes a whole one.
    this.small = Math.floor(size / SMALL_PART);
    this.freeSmall = freeList(this.small);
  }

  /** A buffer of exactly `n` bytes (contents undefined). */
  take(n: number): Buffer {
    if (n > this.size) return Buffer.allocUnsafeSlow(n);
    const small = n <= this.small;
    const buf = (small ? this.freeSmall : this.free).pop() ?? Buffer.allocUnsafeSlow(small ? this.small : this.size);
    this.lent.set(buf.buffer, buf);
    return buf.subarray(0, n);
  }

  /** Give back what take() returned, or any view of it; anything else is ignored. */
  give(data: Uint8Array): void {
    const buf = this.lent.get(data.buffer);
    if (!buf) return;
    this.lent.delete(data.buffer);
    const free = buf.length === this.size ? this.free : this.freeSmall;
    if (free.length < this.keep) free.push(buf);
  }

  /** Buffers lent and not yet given back (for tests). */
  get outstanding(): number {
    return this.lent.size;
  }
}

function freeList(size: number): Buffer[] {
  let free = freeBySize.get(size);
  if (!free) freeBySize.set(size, (free = []));
  return free;
}
