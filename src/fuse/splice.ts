/**
 * READ replies spliced from a file (splice(2), as libfuse and go-fuse do): the header is written into
 * a pipe, the file's pages are spliced behind it (references to the page cache, no copy), and the
 * pipe is spliced into /dev/fuse, which copies the pages once into the reader's. A pread and a
 * write would copy every byte twice and through a JavaScript buffer. One per reader thread.
 */
import { writeSync } from 'node:fs';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import { ENOENT, loadLibc, type Libc } from './libc.js';

/** The pipe holds the header's page and up to 1 MiB of pages behind it: 2 MiB (a power of two). */
const PIPE_SIZE = 2 * 1024 * 1024;

export class Splicer {
  private readonly libc: Libc;
  private readonly pipeRead: number;
  private readonly pipeWrite: number;
  private readonly header = Buffer.alloc(OUT_HEADER_SIZE);
  private readonly drainBuf = Buffer.allocUnsafe(64 * 1024);
  /** The most bytes a reply may carry through the pipe. */
  readonly maxLength: number;

  constructor() {
    this.libc = loadLibc();
    [this.pipeRead, this.pipeWrite] = this.libc.pipe();
    this.libc.setNonBlocking(this.pipeRead);
    this.libc.setNonBlocking(this.pipeWrite);
    // Above /proc/sys/fs/pipe-max-size (1 MiB by default) only with CAP_SYS_RESOURCE: else 1 MiB,
    // and the kernel's largest READs (1 MiB) are read and written as before.
    let size = this.libc.setPipeSize(this.pipeWrite, PIPE_SIZE);
    if (size < 0) size = this.libc.setPipeSize(this.pipeWrite, PIPE_SIZE / 2);
    // The header takes a page of its own; each page of the file one more.
    this.maxLength = size > 0 ? size - 4096 : 0;
  }

  /**
   * Reply to request `unique` on `fuseFd` with `length` bytes of `fileFd` at `position`. True when
   * the reply went out (or its request is gone: interrupted); false when nothing was sent (a short
   * splice, or `valid()` false after the splice: the caller answers another way).
   */
  send(fuseFd: number, unique: bigint, fileFd: number, position: number, length: number, valid: () => boolean): boolean {
    if (length > this.maxLength) return false;
    writeOutHeader(this.header, OUT_HEADER_SIZE + length, 0, unique);
    try {
      writeSync(this.pipeWrite, this.header);
    } catch {
      this.drain();
      return false;
    }
    for (let moved = 0; moved < length; ) {
      const n = this.libc.spliceIn(fileFd, position + moved, this.pipeWrite, length - moved);
      if (n <= 0) {
        this.drain();
        return false;
      }
      moved += n;
    }
    if (!valid()) {
      this.drain();
      return false;
    }
    const sent = this.libc.spliceOut(this.pipeRead, fuseFd, OUT_HEADER_SIZE + length);
    if (sent === OUT_HEADER_SIZE + length) return true;
    this.drain();
    // ENOENT: the request was interrupted meanwhile; nobody waits for the reply.
    return sent === -ENOENT;
  }

  close(): void {
    this.libc.close(this.pipeRead);
    this.libc.close(this.pipeWrite);
  }

  /** Empty the pipe after a reply that was not sent. */
  private drain(): void {
    while (this.libc.read(this.pipeRead, this.drainBuf) > 0) {
      // until EAGAIN: empty
    }
  }
}
