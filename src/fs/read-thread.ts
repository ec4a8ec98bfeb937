/**
 * READs answered in a FUSE reader thread (loaded there by index-thread.ts): a read whose chunks this
 * process has verified in the disk cache (the shared marks of storage/layer-file.ts) is read from
 * the layer's cache file straight into the reply, whatever its size (a sequential reader's 1 MiB
 * READs too: several reader threads overlap them as the load grows). Anything else (a chunk not verified
 * here yet, a file replaced meanwhile, reads switched off for a profile recording) returns -1: the
 * main thread's read path answers it, fetching, verifying or condemning as it does for every READ.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { FileRange } from '../fuse/index.js';
import { loadLibc, type Libc } from '../fuse/libc.js';
import type { ImageIndex } from '../index/reader.js';
import { SHARED_STATE_HEADER, VERIFIED_SHARED } from '../storage/shared-layer-state.js';

/** What the main thread shares with its reader threads for READs (ImageFilesystem.threadAnswers). */
export interface ThreadReadsData {
  /** Int32 [0]: 1 while READs may be answered in the reader threads (setThreadReads). */
  switch: SharedArrayBuffer;
  /** Per layer of the index, in its order: the cache file and its shared verified marks. */
  layers: { path: string; chunkSize: number; state: SharedArrayBuffer }[];
  /** Int32 per layer: READs answered here, then their bytes (mod 2^32), for the main thread's metrics. */
  counts: SharedArrayBuffer;
}

interface LayerView {
  path: string;
  chunkSize: number;
  header: Int32Array;
  ino: Float64Array;
  marks: Uint8Array;
  /** This thread's own descriptor of the file, for generation `fdGen` (-1: none, or not usable). */
  fd: number;
  fdGen: number;
}

interface Found {
  l: LayerView;
  layer: number;
  gen: number;
  fd: number;
  /** Position in the cache file, and length. */
  start: number;
  n: number;
  /** Where the file's data starts in the cache file. */
  fileStart: number;
}

/**
 * A small READ (one answered by copy, `read`: spliced ones get none) has the pages around it read
 * too, this much, aligned (squashfuse's block, the kernel's default readahead): a program's random
 * small reads of a file whose pages are not in the page cache cost one disk read per 128 KiB
 * instead of one per READ (the kernel reads a random 4 KiB pread as it is). A READ this big or
 * bigger gets nothing more.
 */
export const READ_AROUND = 128 * 1024;

/**
 * The READ_AROUND-aligned span of the cache file around the READ's bytes [start, start + n), cut
 * to the chunks verified here (`marks`: the READ's own are; a neighbour may be a hole not fetched
 * yet); undefined when it would add nothing (a READ of READ_AROUND or more, say). Bytes of the
 * files next to it in those chunks are read too, as the kernel's own readahead would.
 */
export function readAroundRange(start: number, n: number, chunkSize: number, marks: Uint8Array): { position: number; length: number } | undefined {
  if (n >= READ_AROUND) return undefined;
  const end = start + n;
  const lo = start - (start % READ_AROUND);
  const hi = end + ((READ_AROUND - (end % READ_AROUND)) % READ_AROUND);
  let a = Math.floor(start / chunkSize);
  while (a > 0 && a * chunkSize > lo && Atomics.load(marks, a - 1) === VERIFIED_SHARED) a--;
  let b = Math.floor((end - 1) / chunkSize) + 1;
  while (b * chunkSize < hi && b < marks.length && Atomics.load(marks, b) === VERIFIED_SHARED) b++;
  const from = Math.max(lo, a * chunkSize);
  const to = Math.min(hi, b * chunkSize);
  return to - from > n ? { position: from, length: to - from } : undefined;
}

/**
 * A big READ (READ_AROUND or more: the kernel's readahead of the mounted file, or a program's big
 * read) is a stream's: the cache file is read ahead of it in aligned blocks this big, a block
 * ahead (`readAheadRange`). 8 MiB is what the kernel reads ahead for one sequential descriptor on
 * this project's bench disk (virtio, read_ahead_kb 8192), as it does for squashfuse's image; the
 * kernel caps each WILLNEED at the device's readahead or largest request (`force_page_cache_ra`),
 * so a disk set to read less ahead gets less.
 */
export const READ_AHEAD_BLOCK = 8 * 1024 * 1024;

/**
 * What to ask for ahead of a big READ of the cache file's [start, start + n): when the READ starts
 * its file (`fileStart`) or goes on into another READ_AHEAD_BLOCK than it starts in, from its end
 * to the end of the block after that one, cut to the chunks verified here; else nothing (asked
 * already).
 * The kernel reads ahead in the cache file only for a descriptor whose reads it sees in order; the
 * reader threads each read through their own descriptor and take a stream's READs in turn, and
 * every file starts a new stream: without this a cold READ waited for its own disk read (reading
 * 100 MB of the bench's largest files, the server's threads waited on the disk 0.2-0.3 s where
 * squashfuse's waited 0.04 s and this 0.08 s: delay accounting, bench/mount/RESULTS.md).
 * Blocks, not the READ's next bytes: the disk gets a few big reads (the next bytes alone split them
 * into READ-sized ones), and a READ within a block costs no call. Past the file's end too, as the
 * kernel's readahead of squashfuse's image does: the files next to it in the layer are often read
 * next (reading ahead only within the file did not pay).
 */
export function readAheadRange(start: number, n: number, fileStart: number, chunkSize: number, marks: Uint8Array): { position: number; length: number } | undefined {
  if (n < READ_AROUND) return undefined;
  const end = start + n;
  // The block the stream goes on in (a READ ending on a block's edge goes on into the next).
  const block = Math.floor(end / READ_AHEAD_BLOCK);
  if (start !== fileStart && Math.floor(start / READ_AHEAD_BLOCK) === block) return undefined;
  const want = (block + 2) * READ_AHEAD_BLOCK;
  let c = Math.floor(end / chunkSize);
  while (c * chunkSize < want && c < marks.length && Atomics.load(marks, c) === VERIFIED_SHARED) c++;
  const to = Math.min(want, c * chunkSize);
  return to > end ? { position: end, length: to - end } : undefined;
}

export class ThreadReads {
  private readonly on: Int32Array;
  private readonly counts: Int32Array;
  private readonly layers: LayerView[];
  private readonly libc: Libc = loadLibc();
  /** What the last READ read ahead, for afterRead (on this thread's descriptor, which only close() closes). */
  private ahead: { fd: number; position: number; length: number } | undefined;

  constructor(
    private readonly index: ImageIndex,
    data: ThreadReadsData,
  ) {
    this.on = new Int32Array(data.switch);
    this.counts = new Int32Array(data.counts);
    this.layers = data.layers.map((l) => ({
      path: l.path,
      chunkSize: l.chunkSize,
      header: new Int32Array(l.state, 0, 2),
      ino: new Float64Array(l.state, 8, 1),
      marks: new Uint8Array(l.state, SHARED_STATE_HEADER),
      fd: -1,
      fdGen: 0,
    }));
  }

  /** Up to `size` bytes of inode `ino` at `offset` into `out`: how many, or -1 (the main thread answers). */
  read(ino: number, offset: number, size: number, out: Buffer): number {
    const f = this.find(ino, offset, size);
    if (typeof f === 'number') return f;
    this.readAround(f);
    this.readAhead(f);
    for (let done = 0; done < f.n; ) {
      const got = readSync(f.fd, out, done, f.n - done, f.start + done);
      if (got <= 0) return -1;
      done += got;
    }
    return this.stillValid(f) ? f.n : -1;
  }

  /** The same READ as a range of this thread's descriptor of the cache file, to splice the reply from. */
  readRange(ino: number, offset: number, size: number): FileRange | undefined {
    const f = this.find(ino, offset, size);
    if (typeof f === 'number') return undefined;
    this.readAhead(f);
    return { fd: f.fd, position: f.start, length: f.n, valid: () => this.stillValid(f) };
  }

  /** Where the READ's bytes are, if this thread may read them: else -1 (main thread) or 0 (past the end). */
  private find(ino: number, offset: number, size: number): Found | number {
    this.ahead = undefined;
    if (Atomics.load(this.on, 0) === 0) return -1;
    const loc = this.index.dataLocation(ino);
    if (!loc) return -1;
    const n = Math.min(size, loc.size - offset);
    if (n <= 0) return 0;
    const l = this.layers[loc.layer];
    if (!l) return -1;
    const gen = Atomics.load(l.header, 0);
    if (gen === 0) return -1;
    const cs = l.chunkSize;
    const start = loc.offset + offset;
    const end = start + n;
    const last = Math.floor((end - 1) / cs);
    for (let i = Math.floor(start / cs); i <= last; i++) if (Atomics.load(l.marks, i) !== VERIFIED_SHARED) return -1;
    // A read reaching the file's next chunk while that one is not verified goes to the main thread:
    // its read path recognises a sequential reader there and reads ahead.
    if ((last + 1) * cs < loc.offset + loc.size && Atomics.load(l.marks, last + 1) !== VERIFIED_SHARED) return -1;
    const fd = this.fdOf(l, gen);
    if (fd < 0) return -1;
    return { l, layer: loc.layer, gen, fd, start, n, fileStart: loc.offset };
  }

  /**
   * Ask for the pages around a small READ before reading it: where they are not in the page cache,
   * one disk read brings them all. Where they are, it costs a system call that finds them there.
   */
  private readAround(f: Found): void {
    const around = readAroundRange(f.start, f.n, f.l.chunkSize, f.l.marks);
    if (around) this.libc.willNeed(f.fd, around.position, around.length);
  }

  /** Note the cache file's bytes a big READ's stream reads next, asked for once its reply is sent (afterRead). */
  private readAhead(f: Found): void {
    const ahead = readAheadRange(f.start, f.n, f.fileStart, f.l.chunkSize, f.l.marks);
    this.ahead = ahead && { fd: f.fd, ...ahead };
  }

  /**
   * After the READ's reply went out: ask for what it reads ahead (posix_fadvise WILLNEED). The call
   * takes the pages and starts their disk reads without waiting for them, yet that costs 0.2 ms or
   * more for a block not yet cached: not before the reply.
   */
  afterRead(): void {
    const a = this.ahead;
    this.ahead = undefined;
    if (a) this.libc.willNeed(a.fd, a.position, a.length);
  }

  /** After the bytes were read: still the file the marks described? Counted if so. */
  private stillValid(f: Found): boolean {
    // Replaced while we read (evicted and reopened): let the main thread answer from the new file.
    if (Atomics.load(f.l.header, 0) !== f.gen) return false;
    Atomics.add(this.counts, 2 * f.layer, 1);
    Atomics.add(this.counts, 2 * f.layer + 1, f.n);
    return true;
  }

  /** Close this thread's descriptors (the connection ended). */
  close(): void {
    this.ahead = undefined;
    for (const l of this.layers) {
      if (l.fd >= 0) closeSync(l.fd);
      l.fd = -1;
      l.fdGen = 0;
    }
  }

  /**
   * The descriptor for generation `gen` of the layer's file: opened here (never a descriptor number
   * of the main thread's, which it may close and the process reuse), and only if it is the inode
   * the marks describe. A mismatch is remembered for that generation: no open per READ.
   */
  private fdOf(l: LayerView, gen: number): number {
    if (l.fdGen === gen) return l.fd;
    if (l.fd >= 0) closeSync(l.fd);
    l.fd = -1;
    l.fdGen = gen;
    let fd = -1;
    try {
      fd = openSync(l.path, constants.O_RDONLY | constants.O_NOFOLLOW);
      if (fstatSync(fd).ino === l.ino[0] && Atomics.load(l.header, 0) === gen) l.fd = fd;
    } catch {
      // gone (evicted): the main thread answers
    }
    if (l.fd !== fd && fd >= 0) closeSync(fd);
    return l.fd;
  }
}
