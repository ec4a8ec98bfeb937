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
 * - The file is named by the diff_id and by a digest of the chunk table it is filled against (chunk
 *   size and every chunk's sha256: `cacheFileName`). Two indexes that disagree about a diff_id (one
 *   of them crafted) fill two files and never share a byte; honest indexes of one layer agree and
 *   share one file.
 * - A mark only says "written after verification by some process". A process verifies each chunk
 *   again the first time it reads it from disk (bytes on disk can rot or be changed by hand), and
 *   trusts it from then on until the file is closed; a chunk that fails is a miss, and its mark
 *   is cleared.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { ClipError } from '../util/errors.js';
import { SHARED_STATE_HEADER, VERIFIED_SHARED } from './shared-layer-state.js';
import { chunkCount, chunkLength, digestHex, type LayerRecord } from './types.js';

const PAGE = 4096;

/** Per chunk, what this process knows: nothing yet, marked present on disk, or verified here. */
const UNKNOWN = 0;
const MARKED = 1;
const VERIFIED = 2;

const names = new WeakMap<LayerRecord, string>();

export function newSharedLayerState(layer: LayerRecord): SharedArrayBuffer {
  return new SharedArrayBuffer(SHARED_STATE_HEADER + chunkCount(layer));
}

/**
 * `sha256_<diff_id hex>-<binding>`: the binding is the first 128 bits of a sha256 over the chunk
 * size, the layer's size and every chunk digest, so a file only ever holds bytes verified against
 * one chunk table. Computed once per record (32 bytes per chunk hashed).
 */
export function cacheFileName(layer: LayerRecord): string {
  let name = names.get(layer);
  if (name) return name;
  const h = createHash('sha256').update(`clip-layer-v1\0${layer.diffId}\0${layer.uncompressedSize}\0${layer.chunkSize}\0`);
  const count = chunkCount(layer);
  for (let i = 0; i < count; i++) h.update(layer.chunkDigest(i));
  name = `sha256_${digestHex(layer.diffId, 'diff_id')}-${h.digest('hex').slice(0, 32)}`;
  names.set(layer, name);
  return name;
}

export function presenceOffset(uncompressedSize: number): number {
  return Math.ceil(uncompressedSize / PAGE) * PAGE;
}

interface QueuedWrite {
  index: number;
  data: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Chunks a positioned write may take at once (under IOV_MAX, and a bounded write). */
const RUN_MAX = 64;

/** Writes by chunk, in runs of adjacent chunks (a chunk written twice stays in its run, once). */
function adjacentRuns(batch: QueuedWrite[]): QueuedWrite[][] {
  const runs: QueuedWrite[][] = [];
  for (const w of [...batch].sort((a, b) => a.index - b.index)) {
    const run = runs[runs.length - 1];
    const last = run?.[run.length - 1];
    if (run && last && (w.index === last.index || (w.index === last.index + 1 && run.length < RUN_MAX))) run.push(w);
    else runs.push([w]);
  }
  return runs;
}

/** What is left of `bufs` after its first `n` bytes (views, no copy). */
function after(bufs: Buffer[], n: number): Buffer[] {
  let k = 0;
  while (k < bufs.length && n >= bufs[k]!.length) n -= bufs[k++]!.length;
  if (k === bufs.length) return [];
  return n ? [bufs[k]!.subarray(n), ...bufs.slice(k + 1)] : bufs.slice(k);
}

export class LayerFile {
  readonly layer: LayerRecord;
  readonly path: string;
  readonly ino: number;
  private readonly fh: FileHandle;
  private readonly durable: boolean;
  private readonly marker: number;
  private readonly presenceAt: number;
  /** UNKNOWN means "ask the file" (another process may have filled it); VERIFIED chunks are served without a check. */
  private readonly known: Uint8Array;
  /** Chunks being read and checked, so concurrent readers check each once. */
  private readonly checking = new Map<number, Promise<Buffer | undefined>>();
  /** The shared copy of VERIFIED marks (see newSharedLayerState), written only while this file owns it. */
  private readonly sharedHeader: Int32Array | undefined;
  private readonly sharedMarks: Uint8Array | undefined;
  private readonly generation: number = 0;
  /** Chunks waiting for the write under way to end (see writeChunk). */
  private queued: QueuedWrite[] = [];
  private writing = false;

  private constructor(layer: LayerRecord, path: string, fh: FileHandle, ino: number, durable: boolean, shared?: SharedArrayBuffer) {
    this.layer = layer;
    this.path = path;
    this.fh = fh;
    this.ino = ino;
    this.durable = durable;
    this.marker = Math.log2(layer.chunkSize);
    this.presenceAt = presenceOffset(layer.uncompressedSize);
    this.known = new Uint8Array(chunkCount(layer));
    if (shared && shared.byteLength === SHARED_STATE_HEADER + this.known.length) {
      // Take it over: no reader trusts the marks while they are reset for this inode.
      const header = new Int32Array(shared, 0, 2);
      Atomics.store(header, 0, 0);
      const marks = new Uint8Array(shared, SHARED_STATE_HEADER);
      marks.fill(0);
      new Float64Array(shared, 8, 1)[0] = ino;
      this.generation = Atomics.add(header, 1, 1) + 1;
      Atomics.store(header, 0, this.generation);
      this.sharedHeader = header;
      this.sharedMarks = marks;
    }
  }

  static async open(layer: LayerRecord, path: string, durable: boolean, shared?: SharedArrayBuffer): Promise<LayerFile> {
    let fh: FileHandle;
    try {
      // Never through a link planted in the cache directory.
      fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw new ClipError('EPERM', `cannot open cache file ${path}`, { object: layer.diffId, cause: err });
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ClipError('EPERM', `cache file ${path} is not a regular file`, { object: layer.diffId });
      const want = presenceOffset(layer.uncompressedSize) + chunkCount(layer);
      // Only ever grow: a shrink could drop another process's marks (safe, but wasteful).
      if (st.size < want) {
        await fh.truncate(want);
        await writeLayerMeta(path, layer).catch(() => undefined); // only `cache stats` needs it
      }
      return new LayerFile(layer, path, fh, st.ino, durable, shared);
    } catch (err) {
      await fh.close().catch(() => {});
      throw new ClipError('EPERM', `cannot prepare cache file ${path}`, { object: layer.diffId, cause: err });
    }
  }

  /** Chunk indexes in [first, last] not marked present on disk, in order. One pread of marks at most. */
  async missing(first: number, last: number): Promise<number[]> {
    let unknownFrom = -1;
    for (let i = first; i <= last; i++) {
      if (this.known[i] === UNKNOWN) {
        unknownFrom = i;
        break;
      }
    }
    if (unknownFrom < 0) return [];
    const marks = Buffer.alloc(last - unknownFrom + 1);
    await this.readFully(marks, this.presenceAt + unknownFrom);
    const out: number[] = [];
    for (let i = unknownFrom; i <= last; i++) {
      if (this.known[i] !== UNKNOWN) continue;
      if (marks[i - unknownFrom] === this.marker) this.known[i] = MARKED;
      else out.push(i);
    }
    return out;
  }

  /** True if this process has verified every chunk in [first, last] (no I/O). */
  allVerified(first: number, last: number): boolean {
    for (let i = first; i <= last; i++) if (this.known[i] !== VERIFIED) return false;
    return true;
  }

  /** True if this process has verified chunk `index`: its bytes on disk may be served as they are. */
  verified(index: number): boolean {
    return this.known[index] === VERIFIED;
  }

  /** True if this process has seen chunk `index` marked present (verified or not yet; no I/O). */
  knownPresent(index: number): boolean {
    return this.known[index] !== UNKNOWN;
  }

  /**
   * Chunk `index` (marked present) read whole and checked against its sha256: its bytes if they
   * match (the chunk is VERIFIED from then on), undefined if not (the mark is cleared: a miss).
   */
  readVerified(index: number): Promise<Buffer | undefined> {
    let p = this.checking.get(index);
    if (!p) {
      p = this.check(index).finally(() => this.checking.delete(index));
      this.checking.set(index, p);
    }
    return p;
  }

  /** Fill `target` with the layer's bytes from `position` (the caller knows they are verified). */
  async read(target: Buffer, position: number): Promise<void> {
    await this.readFully(target, position);
  }

  /**
   * Store a verified chunk, then mark it present. Chunks handed over while a write is under way
   * are written together next: one write per run of adjacent chunks, then one of their marks
   * (two trips to the libuv pool per chunk were a tenth of a profiled prefetch's main thread,
   * with the pool threads they woke: bench/index/RESULTS.md, session 14).
   */
  writeChunk(index: number, data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push({ index, data, resolve, reject });
      if (!this.writing) void this.writeQueued();
    });
  }

  private async writeQueued(): Promise<void> {
    this.writing = true;
    try {
      while (this.queued.length) {
        const batch = this.queued.splice(0);
        // A throw outside the batch's own handling must not leave its writers waiting for ever
        // (a writer settled already ignores this).
        await this.writeBatch(batch).catch((err: unknown) => {
          for (const w of batch) w.reject(err);
        });
      }
    } finally {
      this.writing = false;
    }
  }

  /**
   * Every run's data first (synced when durable), then the runs' marks: a mark never before its
   * data. The runs' writes go to the pool side by side, as separate chunks' writes did.
   */
  private async writeBatch(batch: QueuedWrite[]): Promise<void> {
    const runs = adjacentRuns(batch);
    const wrote = await Promise.all(runs.map(async (run) => {
      try {
        await this.writeAll(run.filter((w, k) => k === 0 || w.index !== run[k - 1]!.index).map((w) => w.data), run[0]!.index * this.layer.chunkSize);
        return true;
      } catch (err) {
        for (const w of run) w.reject(err);
        return false;
      }
    }));
    const written = runs.filter((_, k) => wrote[k]);
    if (this.durable && written.length) {
      try {
        await this.fh.datasync();
      } catch (err) {
        for (const w of written.flat()) w.reject(err);
        return;
      }
    }
    await Promise.all(written.map(async (run) => {
      const first = run[0]!.index;
      const count = run[run.length - 1]!.index - first + 1;
      try {
        await this.writeAll([Buffer.alloc(count, this.marker)], this.presenceAt + first);
      } catch (err) {
        for (const w of run) w.reject(err);
        return;
      }
      for (const w of run) {
        this.setVerified(w.index);
        w.resolve();
      }
    }));
  }

  /** `bufs` one after another from `position` (positioned writes go on where a short one stopped). */
  private async writeAll(bufs: Buffer[], position: number): Promise<void> {
    let rest = bufs;
    for (let at = position; rest.length; ) {
      const { bytesWritten } = rest.length === 1 ? await this.fh.write(rest[0]!, 0, rest[0]!.length, at) : await this.fh.writev(rest, at);
      at += bytesWritten;
      rest = after(rest, bytesWritten);
    }
  }

  private setVerified(index: number): void {
    this.known[index] = VERIFIED;
    // Only the current owner publishes: an older LayerFile of the same layer (evicted, still read
    // by a request in flight) verifies another inode.
    if (this.sharedHeader && Atomics.load(this.sharedHeader, 0) === this.generation) Atomics.store(this.sharedMarks!, index, VERIFIED_SHARED);
  }

  private async check(index: number): Promise<Buffer | undefined> {
    const buf = Buffer.allocUnsafe(chunkLength(this.layer, index));
    await this.readFully(buf, index * this.layer.chunkSize);
    if (createHash('sha256').update(buf).digest().equals(this.layer.chunkDigest(index))) {
      this.setVerified(index);
      return buf;
    }
    this.known[index] = UNKNOWN;
    // Unmarked, the chunk is fetched again and rewritten; a failed clear only costs another check.
    await this.fh.write(Buffer.of(0), 0, 1, this.presenceAt + index).catch(() => undefined);
    return undefined;
  }

  async touch(): Promise<void> {
    const st = await this.fh.stat();
    await this.fh.utimes(new Date(), st.mtime);
  }

  async close(): Promise<void> {
    // Readers stop trusting the marks before the file goes.
    if (this.sharedHeader) Atomics.compareExchange(this.sharedHeader, 0, this.generation, 0);
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
export type CachedLayer = Pick<LayerFile, 'layer' | 'path' | 'missing' | 'knownPresent' | 'verified' | 'allVerified' | 'readVerified' | 'read' | 'writeChunk'>;

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
  verified(): boolean {
    return false;
  }
  allVerified(first: number, last: number): boolean {
    return first > last;
  }
  async readVerified(): Promise<undefined> {
    return undefined;
  }
  async read(): Promise<void> {
    throw new ClipError('EPERM', 'layer is not cached', { object: this.layer.diffId });
  }
  async writeChunk(): Promise<void> {}
}
