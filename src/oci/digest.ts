import { createHash, type Hash } from 'node:crypto';
import { ClipError } from '../util/errors.js';

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** Checks a digest string; anything else (other algorithms, path tricks) is refused by name. */
export function assertDigest(digest: string, what = 'digest'): string {
  if (!DIGEST_RE.test(digest)) throw new ClipError('EINVAL', `not a valid ${what} (expected sha256:<64 hex>)`, { object: digest });
  return digest;
}

export function isDigest(text: string): boolean {
  return DIGEST_RE.test(text);
}

export function digestAlgorithm(digest: string): 'sha256' | 'sha512' {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Fails with EDIGEST unless `bytes` hash to `digest`. */
export function verifyBytes(bytes: Buffer, digest: string, what: string): void {
  const actual = `${digestAlgorithm(digest)}:${createHash(digestAlgorithm(digest)).update(bytes).digest('hex')}`;
  if (actual !== digest) {
    throw new ClipError('EDIGEST', `${what} content does not match its digest (got ${actual})`, { object: digest });
  }
}

/**
 * Verifies a blob as it streams by: counts bytes and hashes them, and reports a mismatch of size
 * or digest as an EDIGEST error naming the digest.
 */
export class BlobVerifier {
  private readonly hash: Hash;
  private seen = 0;

  constructor(private readonly digest: string, private readonly size: number) {
    this.hash = createHash(digestAlgorithm(digest));
  }

  update(chunk: Buffer): void {
    this.seen += chunk.length;
    if (this.size >= 0 && this.seen > this.size) {
      throw new ClipError('EDIGEST', `blob is longer than its recorded size ${this.size}`, { object: this.digest });
    }
    this.hash.update(chunk);
  }

  finish(): void {
    if (this.size >= 0 && this.seen !== this.size) {
      throw new ClipError('EDIGEST', `blob is ${this.seen} bytes, expected ${this.size}`, { object: this.digest });
    }
    const actual = `${digestAlgorithm(this.digest)}:${this.hash.digest('hex')}`;
    if (actual !== this.digest) {
      throw new ClipError('EDIGEST', `blob content does not match its digest (got ${actual})`, { object: this.digest });
    }
  }
}

/** Passes chunks through, verifying the whole against `digest` at the end. */
export async function* verifyingChunks(chunks: AsyncIterable<Buffer>, digest: string, size: number): AsyncGenerator<Buffer> {
  const verifier = new BlobVerifier(digest, size);
  for await (const chunk of chunks) {
    verifier.update(chunk);
    yield chunk;
  }
  verifier.finish();
}
