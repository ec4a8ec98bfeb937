/**
 * Deterministic file content from a seed, fast enough for files of hundreds of MB: an AES-CTR
 * keystream (native code), optionally folded onto a 16-letter alphabet for a part of every block so
 * that the result is partly compressible, as real files are.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FileContent } from './entries.js';

const BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(BLOCK);

export interface SeededOptions {
  /** Share (0..1) of each 64 KiB block drawn from a small alphabet instead of uniform bytes. */
  compressible?: number;
}

function keystream(seed: string) {
  const key = createHash('sha256').update(`clip-seeded:${seed}`).digest();
  return createCipheriv('aes-256-ctr', key, key.subarray(0, 16));
}

function* blocks(seed: string, size: number, compressible: number): Generator<Buffer> {
  const cipher = keystream(seed);
  const folded = Math.floor(BLOCK * Math.min(Math.max(compressible, 0), 1));
  for (let done = 0; done < size; ) {
    const n = Math.min(BLOCK, size - done);
    const block = cipher.update(n === BLOCK ? ZEROS : ZEROS.subarray(0, n));
    for (let i = 0, end = Math.min(folded, n); i < end; i++) block[i] = 0x61 + (block[i]! & 0x0f);
    done += n;
    yield block;
  }
}

/** A stream of exactly `size` bytes, the same for the same seed and options every time. */
export function seededStream(seed: string, size: number, opts: SeededOptions = {}): Readable {
  return Readable.from(blocks(seed, size, opts.compressible ?? 0), { objectMode: false });
}

/** The same bytes as seededStream, in memory: for small files only. */
export function seededBytes(seed: string, size: number, opts: SeededOptions = {}): Buffer {
  return Buffer.concat([...blocks(seed, size, opts.compressible ?? 0)], size);
}

/** File content for a LayerEntry that is generated while the layer is written. */
export function seededContent(seed: string, size: number, opts: SeededOptions = {}): FileContent {
  return { size, generate: () => seededStream(seed, size, opts) };
}
