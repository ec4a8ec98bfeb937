/**
 * How a reader thread blocked in read(2) on a connection's descriptor is woken (reader-worker.ts,
 * serveBlocking). The pool's only reading thread, serving one connection's lone client (solo-reads.ts),
 * reads the descriptor blocking, as libfuse's loop does, instead of epoll_wait and then a
 * non-blocking read: one system call and one koffi crossing fewer per request (bench/mount/RESULTS.md,
 * sessions 14-16). Blocked there it sees neither its wake pipe nor an idle timeout, so the pool wakes it
 * with a request: an asynchronous statfs(2) of the mountpoint on a libuv pool thread (STATFS always
 * reaches the server, and the reader thread answers it itself: nothing waits on the main thread).
 * A STATFS read while blocking ends the blocking, and is not counted as served (idle time).
 * FUSE_NOTIFY_RETRIEVE, a request the server could have the kernel send without touching the
 * mount, is refused (EINVAL) for the root directory by Linux 6.18, and no regular file is sure to
 * stay in the kernel's inode cache (drop_caches forgets them).
 *
 * The pool and the thread share a few Int32 words (BlockState): the pool counts its control
 * messages, the thread says which descriptor it blocks on. Both are sequentially consistent
 * (Atomics): the pool adds to the count and then looks at the descriptor; the thread says the
 * descriptor and then looks at the count. Either the thread sees the new message before it
 * blocks, or the pool sees it blocked and wakes it.
 */

/** Words of the shared state. */
const CONTROL = 0;
const BLOCKED_FD = 1;
const SERVED = 2;
const WORDS = 3;

export class BlockState {
  readonly words: Int32Array;

  constructor(shared = new SharedArrayBuffer(WORDS * 4)) {
    this.words = new Int32Array(shared);
    Atomics.store(this.words, BLOCKED_FD, -1);
  }

  get buffer(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  // ---- the pool's side

  /**
   * A control message was posted to the thread (before this call, so a thread that sees the new
   * count finds it on its port): the descriptor it blocks on, to wake it there, or -1.
   */
  told(): number {
    Atomics.add(this.words, CONTROL, 1);
    return this.blockedFd;
  }

  /** Requests served while blocked (the pool's idle check reads it). */
  get served(): number {
    return Atomics.load(this.words, SERVED);
  }

  get blockedFd(): number {
    return Atomics.load(this.words, BLOCKED_FD);
  }

  // ---- the thread's side

  /** The control count, read before the thread takes its messages. */
  controlCount(): number {
    return Atomics.load(this.words, CONTROL);
  }

  /**
   * The thread is about to block on `fd`: true if it may (no message came since `seen`); false:
   * it must take its messages first.
   */
  enter(fd: number, seen: number): boolean {
    Atomics.store(this.words, BLOCKED_FD, fd);
    if (Atomics.load(this.words, CONTROL) === seen) return true;
    this.leave();
    return false;
  }

  /** Whether a message came since `seen` (checked before each blocking read). */
  changed(seen: number): boolean {
    return Atomics.load(this.words, CONTROL) !== seen;
  }

  servedOne(): void {
    Atomics.add(this.words, SERVED, 1);
  }

  /** No longer blocking: before anything that may let the pool close the descriptor. */
  leave(): void {
    Atomics.store(this.words, BLOCKED_FD, -1);
  }
}
