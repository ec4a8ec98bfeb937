/**
 * How a reader thread blocked in read(2) on a connection's descriptor is woken (reader-worker.ts,
 * serveBlocking). A thread that serves one connection and sees a lone client's requests (one at
 * a time) reads the descriptor blocking, as libfuse's loop does, instead of epoll_wait and then a
 * non-blocking read: one system call and one koffi crossing fewer per request (bench/mount/RESULTS.md,
 * session 14). Blocked there it sees neither its wake pipe nor an idle timeout, so the pool wakes it
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

/** Descriptors below this have a count of watching threads (Blocker); a thread never blocks on a higher one. */
const WATCHED_FDS = 4096;

/**
 * Which thread blocks, shared by the pool's threads: one at a time. The others stop watching that
 * descriptor meanwhile (reader-worker.ts, followBlocker): a thread waiting in epoll_wait comes
 * before a blocked reader in the kernel's queue of waiters (its entry was added once, when it began
 * to watch; a blocking read adds its own at the back each time), and a request's wake-up is
 * exclusive: it wakes that thread, not the blocked one. So the claimer blocks only while no other
 * thread watches the descriptor (a count per descriptor, kept by every thread as it adds and
 * removes it), and a thread that steps back from it after waiting on it first reads what is queued
 * there (the claimer is not blocking yet, so the descriptor is still non-blocking): a wake-up it
 * took is not lost. Session 14's prototype blocked at once, and a thread that woke for a request,
 * saw the claim and stepped back left that request unread with nobody woken for it: a lone client
 * waited until another request came (bench/mount/RESULTS.md, session 15). When the blocker leaves,
 * the pool tells the others (its 'unblocked' event), and they watch the descriptor again. A count
 * left too high (a thread that died) only keeps threads from blocking.
 */
export class Blocker {
  /** [0]: the blocking thread's serial (0: none); [1]: the descriptor it blocks on; [2]: the thread that served last. */
  private readonly words: Int32Array;
  /** Per descriptor: the threads that have it in their epoll set. */
  private readonly watchers: Int32Array;

  constructor(shared = new SharedArrayBuffer(12 + WATCHED_FDS * 4)) {
    this.words = new Int32Array(shared, 0, 3);
    this.watchers = new Int32Array(shared, 12, WATCHED_FDS);
  }

  get buffer(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  /** Thread `serial` would block on `fd`: true if no other thread does. */
  claim(serial: number, fd: number): boolean {
    const who = Atomics.load(this.words, 0);
    if (who === serial) return Atomics.load(this.words, 1) === fd;
    if (who !== 0) return false;
    Atomics.store(this.words, 1, fd);
    return Atomics.compareExchange(this.words, 0, 0, serial) === 0;
  }

  /** Thread `serial` blocks no more: true if it was the blocker (the others are to be told). */
  release(serial: number): boolean {
    return Atomics.compareExchange(this.words, 0, serial, 0) === serial;
  }

  /** The descriptor another thread than `serial` blocks on (this one is to leave it alone), or -1. */
  heldBy(serial: number): number {
    const who = Atomics.load(this.words, 0);
    return who !== 0 && who !== serial ? Atomics.load(this.words, 1) : -1;
  }

  /** A thread added `fd` to its epoll set (`by` 1) or removed it (-1). */
  watching(fd: number, by: 1 | -1): void {
    if (fd < WATCHED_FDS) Atomics.add(this.watchers, fd, by);
  }

  /** Whether the calling thread, which watches `fd`, is the only one: it may block on it. */
  alone(fd: number): boolean {
    return fd < WATCHED_FDS && Atomics.load(this.watchers, fd) <= 1;
  }

  /**
   * Thread `serial` served requests: true if no other thread served since it last did. A thread
   * claims only after a run of wake-ups served by it alone (reader-worker.ts, blockTarget): with
   * several clients every thread sees wake-ups of one request while the others serve too, and
   * one blocking thread would then serve them all.
   */
  servedBy(serial: number): boolean {
    const last = Atomics.load(this.words, 2);
    if (last !== serial) Atomics.store(this.words, 2, serial);
    return last === serial;
  }
}
