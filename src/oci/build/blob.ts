/** Content-addressed blobs in an OCI image layout, written through a temp file and renamed into place. */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface BlobRef {
  digest: string;
  size: number;
}

export function blobPath(layoutDir: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  return join(layoutDir, 'blobs', alg!, hex!);
}

/** A pass-through that hashes and counts what flows through it. */
export class Digester extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }

  /** Valid once the stream has ended. */
  get digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }
}

function tempPath(layoutDir: string): string {
  return join(layoutDir, 'blobs', 'sha256', `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** Stream `source` into the layout as a blob; the data never sits whole in memory. */
export async function writeBlobStream(layoutDir: string, source: Readable | NodeJS.ReadableStream, ...through: NodeJS.ReadWriteStream[]): Promise<BlobRef> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  const tmp = tempPath(layoutDir);
  const digester = new Digester();
  try {
    const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [source, ...through, digester, createWriteStream(tmp)];
    await pipeline(stages);
    const ref = { digest: digester.digest, size: digester.size };
    await rename(tmp, blobPath(layoutDir, ref.digest));
    return ref;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function writeBlobBytes(layoutDir: string, bytes: Buffer): Promise<BlobRef> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  const ref = { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
  const tmp = tempPath(layoutDir);
  await writeFile(tmp, bytes);
  await rename(tmp, blobPath(layoutDir, ref.digest));
  return ref;
}
