/**
 * One cached layer on disk: a single sparse file holding the uncompressed layer at its own offsets,
 * followed (at the next 4 KiB boundary) by one presence byte per chunk.
 *
 * Why this shape:
 * - Data and presence share one inode, so an eviction (unlink) can never pair the presence of one
 *   file with the data of another: a process holding the old fd keeps reading and writing a
 *   consistent, orphaned pair.
 * - A chunk's presence byte is written with a positioned 1-byte write after its verified data is
 *   written (and optionally fdatasync'ed). kill -9 at any instant leaves either no mark (the chunk is
 *   fetched again) or a mark over complete data. Writers never read-modify-write: two processes
 *   filling the same chunk write the same bytes and the same mark.
 * - The mark is log2(chunkSize), so a reader indexing the layer with another chunk size sees other
 *   marks as absent rather than trusting ranges it never verified.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { ClipError } from '../util/errors.js';
import { chunkCount, type LayerRecord } from './types.js';

const PAGE = 4096;

export function presenceOffset(uncompressedSize: number): number {
  return Math.ceil(uncompressedSize / PAGE) * PAGE;
}

export class LayerFile {
  readonly layer: LayerRecord;
  readonly path: string;
  readonly ino: number;
  private readonly fh: FileHandle;
  private readonly durable: boolean;
  private readonly marker: number;
  private readonly presenceAt: number;
  /** Chunks this process knows are present; 0 means "ask the file" (another process may have filled it). */
  private readonly known: Uint8Array;

  private constructor(layer: LayerRecord, path: string, fh: FileHandle, ino: number, durable: boolean) {
    this.layer = layer;
    this.path = path;
    this.fh = fh;
    this.ino = ino;
    this.durable = durable;
    this.marker = Math.log2(layer.chunkSize);
    this.presenceAt = presenceOffset(layer.uncompressedSize);
    this.known = new Uint8Array(chunkCount(layer));
  }

  static async open(layer: LayerRecord, path: string, durable: boolean): Promise<LayerFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    } catch (err) {
      throw new ClipError('EPERM', `cannot open cache file ${path}`, { object: layer.diffId, cause: err });
    }
    try {
      const st = await fh.stat();
      const want = presenceOffset(layer.uncompressedSize) + chunkCount(layer);
      // Only ever grow: a shrink could drop another process's marks (safe, but wasteful).
      if (st.size < want) {
        await fh.truncate(want);
        await writeLayerMeta(path, layer).catch(() => undefined); // only `cache stats` needs it
      }
      return new LayerFile(layer, path, fh, st.ino, durable);
    } catch (err) {
      await fh.close().catch(() => {});
      throw new ClipError('EPERM', `cannot prepare cache file ${path}`, { object: layer.diffId, cause: err });
    }
  }

  /** Chunk indexes in [first, last] not present on disk, in order. One pread of marks at most. */
  async missing(first: number, last: number): Promise<number[]> {
    let unknownFrom = -1;
    for (let i = first; i <= last; i++) {
      if (this.known[i] === 0) {
        unknownFrom = i;
        break;
      }
    }
    if (unknownFrom < 0) return [];
    const marks = Buffer.alloc(last - unknownFrom + 1);
    await this.readFully(marks, this.presenceAt + unknownFrom);
    const out: number[] = [];
    for (let i = unknownFrom; i <= last; i++) {
      if (this.known[i] === 1) continue;
      if (marks[i - unknownFrom] === this.marker) this.known[i] = 1;
      else out.push(i);
    }
    return out;
  }

  /** True if this process has seen every chunk in [first, last] present (no I/O). */
  allKnown(first: number, last: number): boolean {
    for (let i = first; i <= last; i++) if (this.known[i] !== 1) return false;
    return true;
  }

  /** True if this process has seen chunk `index` present (no I/O). */
  knownPresent(index: number): boolean {
    return this.known[index] === 1;
  }

  /** Fill `target` with the layer's bytes from `position` (the caller knows they are present). */
  async read(target: Buffer, position: number): Promise<void> {
    await this.readFully(target, position);
  }

  /** Store a verified chunk, then mark it present. */
  async writeChunk(index: number, data: Buffer): Promise<void> {
    const at = index * this.layer.chunkSize;
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, at + done);
      done += bytesWritten;
    }
    if (this.durable) await this.fh.datasync();
    await this.fh.write(Buffer.of(this.marker), 0, 1, this.presenceAt + index);
    this.known[index] = 1;
  }

  async touch(): Promise<void> {
    const st = await this.fh.stat();
    await this.fh.utimes(new Date(), st.mtime);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  private async readFully(target: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < target.length) {
      const { bytesRead } = await this.fh.read(target, done, target.length - done, position + done);
      if (bytesRead === 0) {
        // Past EOF: marks not yet written read as absent; data past EOF means a damaged cache file.
        target.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }
}

/** What `clip cache stats` needs to read a layer file's marks: beside it, as <file>.json. */
export interface LayerMeta {
  diffId: string;
  uncompressedSize: number;
  chunkSize: number;
}

export function layerMetaPath(layerPath: string): string {
  return `${layerPath}.json`;
}

/** Written (atomically: temporary, then rename) by whoever grows the layer file; last writer wins. */
async function writeLayerMeta(layerPath: string, layer: LayerRecord): Promise<void> {
  const meta: LayerMeta = { diffId: layer.diffId, uncompressedSize: layer.uncompressedSize, chunkSize: layer.chunkSize };
  const tmp = `${layerPath}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(meta)}\n`, { mode: 0o600 });
  await rename(tmp, layerMetaPath(layerPath));
}

export async function readLayerMeta(layerPath: string): Promise<LayerMeta | undefined> {
  try {
    const m = JSON.parse(await readFile(layerMetaPath(layerPath), 'utf8')) as Partial<LayerMeta>;
    const ok = typeof m.diffId === 'string' && Number.isSafeInteger(m.uncompressedSize) && Number.isSafeInteger(m.chunkSize) && m.chunkSize! >= 512;
    return ok ? (m as LayerMeta) : undefined;
  } catch {
    return undefined;
  }
}

/** Chunks marked present for `meta`'s chunk size in the layer file at `layerPath`, of how many. */
export async function countPresent(layerPath: string, meta: LayerMeta): Promise<{ present: number; total: number }> {
  const total = chunkCount(meta);
  const marker = Math.log2(meta.chunkSize);
  const fh = await open(layerPath, 'r');
  try {
    const buf = Buffer.alloc(Math.min(total, 1 << 20));
    let present = 0;
    for (let done = 0; done < total; ) {
      const n = Math.min(buf.length, total - done);
      const { bytesRead } = await fh.read(buf, 0, n, presenceOffset(meta.uncompressedSize) + done);
      for (let i = 0; i < bytesRead; i++) if (buf[i] === marker) present++;
      if (bytesRead < n) break;
      done += n;
    }
    return { present, total };
  } finally {
    await fh.close();
  }
}

/** The operations the read path uses on a cached layer. */
export type CachedLayer = Pick<LayerFile, 'layer' | 'path' | 'missing' | 'knownPresent' | 'allKnown' | 'read' | 'writeChunk'>;

/**
 * Stands in for a layer file that could not be opened (unwritable or full cache directory): every
 * chunk is missing and writes go nowhere, so reads still flow from the slower tiers.
 */
export class UncachedLayer implements CachedLayer {
  constructor(readonly layer: LayerRecord, readonly path: string) {}
  async missing(first: number, last: number): Promise<number[]> {
    return Array.from({ length: Math.max(0, last - first + 1) }, (_, k) => first + k);
  }
  knownPresent(): boolean {
    return false;
  }
  allKnown(first: number, last: number): boolean {
    return first > last;
  }
  async read(): Promise<void> {
    throw new ClipError('EPERM', 'layer is not cached', { object: this.layer.diffId });
  }
  async writeChunk(): Promise<void> {}
}
