/**
 * Node's zlib has no inflatePrime, so a resume at a checkpoint whose next block starts inside a
 * byte (bits != 0) is prepared differently: empty deflate blocks are put in front whose length in
 * bits is 8m + s, where s = 8 - bits is the number of low bits of byte in-1 that belong to the
 * block before. The real data then starts at the same bit of a byte as in the blob, so byte
 * boundaries (which stored blocks align to) stay where they are and no shifting is needed.
 */

class BitWriter {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;

  /** Write `count` bits of `value`, least significant first (deflate's order for fields). */
  bits(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      this.acc |= ((value >> i) & 1) << this.n;
      if (++this.n === 8) this.flushByte();
    }
  }

  /** Write a Huffman code, most significant bit first. */
  code(value: number, length: number): void {
    for (let i = length - 1; i >= 0; i--) this.bits((value >> i) & 1, 1);
  }

  /** Whole bytes written, and the bits of the last partial byte (low bits) with their count. */
  finish(): { whole: Buffer; tail: number; tailBits: number } {
    return { whole: Buffer.from(this.bytes), tail: this.acc, tailBits: this.n };
  }

  private flushByte(): void {
    this.bytes.push(this.acc);
    this.acc = 0;
    this.n = 0;
  }
}

/** A non-final fixed-Huffman block holding only end-of-block: 10 bits. */
function emptyFixedBlock(w: BitWriter): void {
  w.bits(0, 1);
  w.bits(1, 2);
  w.code(0, 7);
}

/**
 * A non-final dynamic block holding only end-of-block: 93 bits (odd, which fixed blocks cannot
 * give). Code-length code: symbol 1 -> "0", 0 -> "10", 18 -> "11" (complete); literal/length
 * code: only end-of-block, length 1 (zlib accepts a single one-bit code); no distance codes.
 */
function emptyDynamicBlock(w: BitWriter): void {
  w.bits(0, 1);
  w.bits(2, 2);
  w.bits(0, 5); // 257 literal/length lengths
  w.bits(0, 5); // 1 distance length
  w.bits(14, 4); // 18 code-length lengths, in the order below
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1];
  const clen: Record<number, number> = { 18: 2, 0: 2, 1: 1 };
  for (const sym of order) w.bits(clen[sym] ?? 0, 3);
  w.code(0b11, 2); // 18: 11 + 127 = 138 zeros
  w.bits(127, 7);
  w.code(0b11, 2); // 18: 11 + 107 = 118 zeros (literals 0-255 unused)
  w.bits(107, 7);
  w.code(0b0, 1); // end-of-block has length 1
  w.code(0b10, 2); // the one distance code is unused
  w.code(0, 1); // end-of-block
}

/**
 * The bytes to give a raw inflate (with the checkpoint's window as dictionary) before the blob's
 * bytes from `in` on: empty blocks, then byte in-1 with its low (8 - bits) bits replaced by the
 * last bits of those blocks. `firstByte` is the blob's byte at in - 1.
 */
export function alignedHead(bits: number, firstByte: number): Buffer {
  if (bits < 1 || bits > 7) throw new RangeError(`bits must be 1-7, got ${bits}`);
  const s = 8 - bits;
  const w = new BitWriter();
  let fixed = s / 2;
  if (s % 2) {
    emptyDynamicBlock(w);
    fixed = (((s - 5) % 8) + 8) % 8 / 2;
  }
  for (let i = 0; i < fixed; i++) emptyFixedBlock(w);
  const { whole, tail, tailBits } = w.finish();
  if (tailBits !== s) throw new Error(`internal: prefix ends at bit ${tailBits}, wanted ${s}`);
  const merged = (firstByte & ~((1 << s) - 1) & 0xff) | tail;
  return Buffer.concat([whole, Buffer.of(merged)]);
}
