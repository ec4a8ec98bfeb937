/**
 * The pool's side of blocking reads (blocking-wake.ts): which thread may read a connection's
 * descriptor blocking, decided for the whole pool, never by the threads among themselves.
 *
 * A thread blocked in read(2) gets a request only if no thread waits in epoll_wait on the same
 * descriptor: an epoll entry sits ahead of a blocked read in the kernel's queue of waiters, and a
 * request's wake-up is exclusive. So the pool lets one thread block ("solo") only while every
 * other thread has stepped back ("parked": the descriptor out of its epoll set, read until empty
 * first, since it may have taken a wake-up). Session 15 let each thread claim the descriptor by
 * itself: under 8 readers on 2 cores a thread that served 8 wake-ups in a row alone claimed it
 * (25 claims over four runs), and the one blocking thread then served hundreds of requests in a
 * row (17 % of them) while the other sat out: 13-18 % fewer reads a second (bench/mount/RESULTS.md,
 * session 16).
 *
 * Here, a thread that sees a lone client's requests (one at a time, 8 wake-ups in a row) says
 * 'lone'; the pool parks the others and then tells it 'solo', but only while the process has one
 * connection (a statfs of its mountpoint wakes the blocked thread) and nothing has queued for
 * SOLO_AFTER_QUEUE_MS: hysteresis, so a busy load does not flip between one thread and several.
 * Anything that means more than one client (a thread's 'busy', the soloist's 'queued', a thread
 * started, a second connection) revokes it: the soloist is told 'unsolo' (woken if blocked),
 * and once it says it reads non-blocking again ('unsoloed') the others are unparked.
 */
import type { ReaderControl } from './reader-worker.js';

/** No solo reads for this long after requests were seen queued. */
export const SOLO_AFTER_QUEUE_MS = 500;

export interface SoloThread {
  tell(msg: ReaderControl): void;
}

interface Solo<T> {
  soloist: T;
  fd: number;
  /** Told to park, not yet parked. */
  parking: Set<T>;
  /** 'solo' sent; 'revoking': 'unsolo' sent, the others wait for its 'unsoloed'. */
  phase: 'parking' | 'solo' | 'revoking';
}

export class SoloReads<T extends SoloThread> {
  private solo: Solo<T> | undefined;
  private lastQueue = 0;

  /** `threads`: the pool's live threads. */
  constructor(
    private readonly threads: () => readonly T[],
    private readonly now: () => number = Date.now,
  ) {}

  /** `t` saw a lone client on `fd`, the process's only connection. */
  lone(t: T, fd: number): void {
    if (this.solo || this.now() - this.lastQueue < SOLO_AFTER_QUEUE_MS) return;
    const others = this.threads().filter((o) => o !== t);
    this.solo = { soloist: t, fd, parking: new Set(others), phase: 'parking' };
    for (const o of others) o.tell({ op: 'park', fd });
    this.grantIfParked();
  }

  parked(t: T): void {
    if (this.solo?.parking.delete(t)) this.grantIfParked();
  }

  /**
   * More than one client may come (another thread or connection) or did (`queued`: requests were
   * seen queued, and then no solo for a while).
   */
  revoke(queued: boolean): void {
    if (queued) this.lastQueue = this.now();
    const s = this.solo;
    if (!s || s.phase === 'revoking') return;
    if (s.phase === 'solo') {
      s.phase = 'revoking';
      s.soloist.tell({ op: 'unsolo' });
      return;
    }
    this.solo = undefined; // still parking: the soloist was never told
    this.unpark(s.soloist);
  }

  /** The soloist reads non-blocking again: the others watch the descriptor again. */
  unsoloed(t: T): void {
    if (this.solo?.soloist !== t || this.solo.phase !== 'revoking') return;
    this.solo = undefined;
    this.unpark(t);
  }

  /**
   * Thread `t` ended. The soloist: its descriptor is to be made non-blocking (`fd`, returned) and
   * the others unparked; another: one parker fewer to wait for.
   */
  exited(t: T): number | undefined {
    const s = this.solo;
    if (!s) return undefined;
    if (s.soloist !== t) {
      this.parked(t);
      return undefined;
    }
    this.solo = undefined;
    this.unpark(t);
    return s.fd;
  }

  private grantIfParked(): void {
    const s = this.solo;
    if (s?.phase !== 'parking' || s.parking.size > 0) return;
    s.phase = 'solo';
    s.soloist.tell({ op: 'solo', fd: s.fd });
  }

  /** Every thread but the soloist watches the descriptor again (one that never parked ignores it). */
  private unpark(soloist: T): void {
    for (const o of this.threads()) if (o !== soloist) o.tell({ op: 'unpark' });
  }
}
