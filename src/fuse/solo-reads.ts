/**
 * Solo reads: while the process serves one FUSE connection, its reader threads read that
 * connection's descriptor blocking, as libfuse's and go-fuse's threads do, instead of epoll_wait and
 * then a non-blocking read: one system call fewer per request (on this VM a system call is
 * ~1.4 µs of a ~33 µs getxattr round trip; bench/mount/RESULTS.md, session 18).
 *
 * Blocking is a property of the descriptor's open file description (O_NONBLOCK), so the pool
 * clears the flag for every thread at once, and sets it again the same way. A thread blocked in
 * read(2) sees no control message; to take it back the pool sets O_NONBLOCK again and sends each
 * thread a signal (SOLO_SIGNAL, handled by a no-op listener in the main thread): the interrupted
 * read restarts, finds the descriptor non-blocking and returns EAGAIN, and the thread goes back to
 * its epoll loop and its messages. The signal is sent after O_NONBLOCK is set: a thread about to
 * wait takes the pending signal at once, so none can sleep through it.
 *
 * Solo reads start when the one thread reading says its client is lone. Other threads sit out
 * first ('park': the descriptor out of their epoll sets, read until EAGAIN before they say so):
 * threads blocked in read take turns (the kernel wakes the one that has waited longest), and a
 * lone client's cold preads ran 23 % slower on two threads taking turns than on one. A queue seen
 * while solo ('busy') has a parked thread read again, blocking too, at once; only then does the
 * pool start a new one. No thread steps back from a wake-up it took: a thread woken from
 * epoll_wait reads, and a parking one reads what is queued (sessions 15-16 lost a wake-up taken by
 * a thread stepping back).
 *
 * The pool and each thread share four Int32 words (SoloWords), read and written with Atomics.
 */

/** The signal that interrupts a blocked read. Its default action is to ignore it: a stray one harms nothing. */
export const SOLO_SIGNAL = 'SIGURG';

/** Control messages the pool posted to the thread (it compares with what it took before each blocking read). */
export const POSTED = 0;
/** 1 while the thread's one connection's descriptor is blocking: read it until EAGAIN. */
export const SOLO = 1;
/** The thread's kernel id, stored before it first reads (0: it has not read yet). */
export const TID = 2;
/** Requests read while solo (the pool's quiet check). */
export const SERVED = 3;
const WORDS = 4;

export function soloWords(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(WORDS * 4));
}
