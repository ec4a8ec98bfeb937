/**
 * The process's FUSE reader threads (reader-worker.ts), shared by every open /dev/fuse: each thread
 * reads every connection's descriptor, the very one the holder keeps (no clones: a request read
 * by a server that is then killed stays in that descriptor's queue, and the next server gets it
 * back with FUSE_NOTIFY_RESEND). The count follows the load: one thread while requests come one at
 * a time; another (up to the cap) when a thread finds requests queued behind the one it read;
 * an added thread ends after it has served nothing for a while (each costs ~10 MB of RSS, and
 * about 0.1 s of CPU to start), newest first. While the load is followed (a connection keeps one
 * thread, may have more), the last thread ends too after 2 minutes without a request: the main
 * thread then waits for the descriptors in epoll_wait on a thread of libuv's pool (no isolate, no
 * heap) and starts a reader thread when one has a request (bench/server/RESULTS.md: the idle
 * server's cost of the thread, and the first request's wait). With one connection and a lone
 * client, one thread reads its descriptor blocking and the others sit out (solo-reads.ts).
 */
import { closeSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { isMainThread, MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../util/worker.js';
import type { ThreadTuning } from './env-options.js';
import { loadLibc } from './libc.js';
import type { ReaderControl, ReaderEvent, ReaderWorkerData, ThreadAnswering } from './reader-worker.js';
import { POSTED, SERVED, SOLO, SOLO_SIGNAL, soloWords, TID } from './solo-reads.js';

/** How many threads read a connection: always `min`, up to `max` while requests queue. */
export interface ReaderPolicy {
  min: number;
  max: number;
  /** An added thread that served nothing for this long ends. */
  idleMs: number;
  /** Read (and checked) once with the policy: a thread's start never reads the environment. */
  tuning: ThreadTuning;
}

export interface ReaderCallbacks {
  onRequest: (req: Buffer) => void;
  /** The connection ended (ENODEV: unmount or abort) or a thread failed reading it. Called once. */
  onStopped: (why: { code: string; message: string }) => void;
  onWarning: (message: string) => void;
  /** No thread touches the descriptor any more: it may be closed. */
  onReleased: () => void;
}

interface Entry {
  id: number;
  fd: number;
  policy: ReaderPolicy;
  callbacks: ReaderCallbacks;
  answering: ThreadAnswering | undefined;
  /** Threads told to read it that have not let go of it yet. */
  readers: Set<ReaderThread>;
  ended?: { code: string; message: string };
}

const WAKE = Buffer.from([1]);
/** A thread is added when one thread said 'busy' twice within this. */
const BUSY_WINDOW_MS = 250;
/** A thread started ahead of its connection (prestart) ends if none opens within this. */
const PRESTART_MS = 60_000;
/** Solo reads end after this long without a request (the threads' idle times then run). */
const SOLO_QUIET_MS = 5_000;
/** A lone client this soon after a 'busy' keeps the added threads (the tail of a busy load). */
const LONE_AFTER_BUSY_MS = 2_000;

/*
 * Their tuning comes from the environment (env-options.ts threadTuning): CLIP_FUSE_SLEEP_MS, how
 * long the last thread waits for a request before it ends (2 minutes); CLIP_FUSE_SLICE_US, the
 * scheduler slice a thread asks for (100 µs; 0: the kernel's default); CLIP_FUSE_STREAM_RATE,
 * requests a second from which a thread serving them alone says 'stream' (2000: a thread that
 * serves a client's every request uses more than its share of a busy CPU, and the scheduler makes
 * it wait; two threads taking turns each use half, docs/fuse.md); CLIP_FUSE_TURNS=1, threads take
 * turns on such a stream (off by default: in four bench runs under load it cost the one-reader
 * 4 KiB preads 5–60 % and helped python's start; bench/mount/RESULTS.md, session 8).
 */

/** A connection following the load may be left without a thread while it is quiet. */
function maySleep(p: ReaderPolicy): boolean {
  return p.min <= 1 && p.max > 1;
}

class ReaderThread {
  readonly worker: Worker;
  private readonly control: MessagePort;
  private readonly wakeRead: number;
  private readonly wakeWrite: number;
  /** Told to exit (idle, or no connection left): its end is not a failure. */
  leaving = false;
  /** Its modules are loaded and it reads. */
  ready = false;
  /** The scheduler slice it has (ns), or minus the errno of asking; 0: not asked. */
  slice = 0;
  /** Its kernel thread id, once ready. */
  tid = 0;
  /** It said it served nothing for the idle time, and has not served since. */
  idle = false;
  /** When it last said 'busy' (it says so at most every 50 ms). */
  lastBusy = 0;
  /** Shared with the thread (solo-reads.ts). */
  readonly words = soloWords();
  /** Solo reads: 'asked' to stop reading (park `parkSeq`), 'yes' once it said so. */
  parked: 'no' | 'asked' | 'yes' = 'no';
  parkSeq = 0;
  private closed = false;

  constructor(
    readonly bufferSize: number,
    idleMs: number,
    { sliceNs, turns, streamRate }: ThreadTuning,
    preload: string[],
    solo: boolean,
    onEvent: (t: ReaderThread, e: ReaderEvent) => void,
    onExit: (t: ReaderThread, why: string) => void,
  ) {
    const libc = loadLibc();
    [this.wakeRead, this.wakeWrite] = libc.pipe();
    libc.setNonBlocking(this.wakeRead);
    const { port1, port2 } = new MessageChannel();
    this.control = port1;
    Atomics.store(this.words, SOLO, solo ? 1 : 0);
    const data: ReaderWorkerData = { wakeFd: this.wakeRead, bufferSize, idleMs, control: port2, sliceNs, turns, streamRate, words: this.words, ...(preload.length ? { preload } : {}) };
    this.worker = startWorker(siblingModule(import.meta.url, 'reader-worker'), { workerData: data, transferList: [port2] });
    this.worker.on('message', (e: ReaderEvent) => onEvent(this, e));
    let exited = false;
    const exit = (why: string): void => {
      if (exited) return;
      exited = true;
      this.closed = true; // before closing: a closed pipe's number may be reused by another file
      closeSync(this.wakeRead);
      closeSync(this.wakeWrite);
      onExit(this, why);
    };
    this.worker.on('error', (err) => exit(err.message));
    this.worker.on('exit', () => exit('reader thread exited'));
  }

  tell(msg: ReaderControl): void {
    if (this.closed) return;
    this.control.postMessage(msg);
    // After the message: a thread that sees the new count finds it on its port.
    Atomics.add(this.words, POSTED, 1);
    try {
      writeSync(this.wakeWrite, WAKE);
    } catch {
      // the thread is gone already
    }
  }

  /** Interrupt a blocked read (solo-reads.ts); a thread that has not read yet needs none. */
  interrupt(signal: number): void {
    const tid = Atomics.load(this.words, TID);
    if (!this.closed && tid > 0) loadLibc().signalThread(tid, signal);
  }
}

class ReaderPool {
  /** Live threads, oldest first; idle ones end from the newest. */
  private readonly threads: ReaderThread[] = [];
  private readonly entries = new Map<number, Entry>();
  private nextId = 1;
  private bufferSize = 0;
  private lastStart = 0;
  /** Holds on adding threads (holdGrowth) not released yet; a second connection ends them all. */
  private readonly growthHolds = new Set<object>();
  /** Set while no thread runs and the main thread waits for a request: ends that wait. */
  private wake: (() => void) | undefined;
  /** Ends a thread started ahead (prestart) that no connection came for. */
  private prestarted: NodeJS.Timeout | undefined;
  /** The descriptor the threads read blocking (solo-reads.ts), or -1. */
  private soloFd = -1;
  /** Ends solo reads once requests stop. */
  private soloQuiet: NodeJS.Timeout | undefined;
  private signalHandled = false;
  /** When a thread last said 'busy'. */
  private lastBusy = 0;
  /** Threads told to exit that have not yet: out of `threads`, they may still be blocked in read. */
  private readonly leavingThreads = new Set<ReaderThread>();

  open(fd: number, bufferSize: number, policy: ReaderPolicy, callbacks: ReaderCallbacks, answering?: ThreadAnswering): { readers(): number } {
    if (this.entries.size > 0 && bufferSize > this.bufferSize) {
      throw new Error(`the FUSE reader threads read at most ${this.bufferSize} bytes a request; ${bufferSize} asked`);
    }
    if (this.entries.size === 0) {
      clearTimeout(this.prestarted);
      // Threads started ahead (prestart) with smaller buffers than this connection's requests.
      if (bufferSize > this.bufferSize) this.endAll();
      this.bufferSize = bufferSize;
    }
    loadLibc().setNonBlocking(fd);
    // A second connection: holds taken for the first one's start end (holdGrowth).
    if (this.entries.size > 0) this.growthHolds.clear();
    const entry: Entry = { id: this.nextId++, fd, policy, callbacks, answering, readers: new Set() };
    this.entries.set(entry.id, entry);
    this.threads.forEach((t, slot) => {
      if (slot < policy.max) this.add(t, entry);
    });
    while (this.threads.length < policy.min) this.start();
    return { readers: () => entry.readers.size };
  }

  /** Threads reading now (for status and tests). */
  get size(): number {
    return this.threads.length;
  }

  /** Each ready thread's scheduler slice in ns (minus the errno if it could not ask; 0: not asked). */
  slices(): number[] {
    return this.threads.filter((t) => t.ready).map((t) => t.slice);
  }

  /** The threads read a connection's descriptor blocking (solo-reads.ts). */
  get solo(): boolean {
    return this.soloFd >= 0;
  }

  /** Threads sitting out while one serves a lone client (solo-reads.ts). */
  get parked(): number {
    return this.threads.filter((t) => t.parked === 'yes').length;
  }

  /** Each ready thread's kernel thread id (tests look at /proc/self/task/TID). */
  threadIds(): number[] {
    return this.threads.filter((t) => t.ready).map((t) => t.tid);
  }

  /** `fresh`: a thread just started, which takes its messages before it first reads. */
  private add(t: ReaderThread, e: Entry, fresh = false): void {
    e.readers.add(t);
    const msg: ReaderControl = { op: 'add', id: e.id, fd: e.fd, ...(e.answering ? { answering: e.answering } : {}) };
    if (fresh) t.tell(msg);
    else this.tell(t, msg);
  }

  /** A message the thread must see: solo reads end first (a thread blocked in read sees none). */
  private tell(t: ReaderThread, msg: ReaderControl): void {
    this.endSolo();
    t.tell(msg);
  }

  /**
   * A thread saw a lone client. One thread serves it best: with two reading blocking, the kernel
   * wakes them in turn, and one reader's cold 4 KiB preads ran at 10 453/s against 13 632/s with
   * one (bench/mount/RESULTS.md, session 18). So the newer threads park first (unless a queue was
   * seen within LONE_AFTER_BUSY_MS: the client may be the tail of a busy load), and the next 'lone'
   * of the one thread left reading starts solo reads.
   */
  private onLone(): void {
    const e = this.soloEntry();
    if (!e) return;
    const active = this.threads.filter((t) => t.parked === 'no');
    if (active.length === 1) {
      this.startSolo(e);
      return;
    }
    if (active.length === 0 || Date.now() - this.lastBusy < LONE_AFTER_BUSY_MS) return;
    // The newest sit out; the oldest serves. Not while solo: a parked thread must not be blocked in read.
    this.endSolo(false);
    for (const t of active.slice(1)) {
      t.parked = 'asked';
      t.tell({ op: 'park', seq: ++t.parkSeq });
    }
  }

  /** A queue while threads sit out: one reads again (no start, no compiling), as solo reads go on. */
  private unpark(): boolean {
    const t = this.threads.find((th) => th.parked === 'yes');
    if (!t) return false;
    t.parked = 'no';
    t.tell({ op: 'unpark' });
    return true;
  }

  /**
   * The connection that solo reads would be for: the process's only one. Not in a worker thread,
   * where no signal listener can be set; not with CLIP_FUSE_SOLO=0.
   */
  private soloEntry(): Entry | undefined {
    const e = [...this.entries.values()][0];
    if (!isMainThread || this.entries.size !== 1 || !e || e.ended || this.wake || !e.policy.tuning.solo) return undefined;
    return e;
  }

  /** The one thread reading saw a lone client: it reads the descriptor blocking (solo-reads.ts). */
  private startSolo(e: Entry): void {
    if (this.soloFd >= 0) return;
    // Every other thread has parked: none is in epoll_wait or read on the descriptor; none is leaving.
    if (this.leavingThreads.size > 0 || this.threads.some((t) => !t.ready || !e.readers.has(t) || t.parked === 'asked')) return;
    if (!this.signalHandled) {
      // A no-op listener: the signal then interrupts a blocked read (its default action ignores it).
      process.on(SOLO_SIGNAL, () => undefined);
      this.signalHandled = true;
    }
    try {
      loadLibc().setBlocking(e.fd);
    } catch {
      return; // reads stay non-blocking
    }
    this.soloFd = e.fd;
    for (const t of this.threads) Atomics.store(t.words, SOLO, 1);
    let served = -1;
    this.soloQuiet = setInterval(() => {
      const count = this.threads.reduce((n, t) => n + Atomics.load(t.words, SERVED), 0);
      if (count === served) this.endSolo();
      served = count;
    }, SOLO_QUIET_MS).unref();
  }

  /**
   * The descriptor non-blocking again, and every thread blocked on it interrupted (solo-reads.ts);
   * `unpark`: the threads sitting out read again.
   */
  private endSolo(unpark = true): void {
    if (unpark) {
      for (const t of this.threads) {
        if (t.parked === 'no') continue;
        t.parked = 'no';
        t.tell({ op: 'unpark' });
      }
    }
    if (this.soloFd < 0) return;
    const fd = this.soloFd;
    this.soloFd = -1;
    clearInterval(this.soloQuiet);
    try {
      loadLibc().setNonBlocking(fd);
    } catch {
      // closed: no thread reads it any more
    }
    const all = [...this.threads, ...this.leavingThreads];
    for (const t of all) Atomics.store(t.words, SOLO, 0);
    // After the flag: a read about to wait takes the pending signal at once.
    for (const t of all) t.interrupt(constants.signals[SOLO_SIGNAL]);
  }

  /**
   * Start the first thread now, before its first connection opens: a mount that resolves its image
   * first (fetching the index and profile) has the thread's start (0.1 s of CPU, 0.3-0.5 s under
   * load) done by the time it attaches. `preload`: modules the thread loads meanwhile (the
   * connection's answering module). The thread takes the first connection opened with a buffer no
   * bigger than `bufferSize` as if started for it, and ends if none comes within PRESTART_MS.
   */
  prestart(bufferSize: number, policy: ReaderPolicy, preload: string[] = []): void {
    if (this.threads.length > 0 || this.entries.size > 0) return;
    this.bufferSize = bufferSize;
    // As start() would for a connection of this policy alone.
    this.launch(maySleep(policy) ? policy.tuning.sleepMs : 0, policy.tuning, preload);
    clearTimeout(this.prestarted);
    this.prestarted = setTimeout(() => {
      if (this.entries.size === 0) this.endAll();
    }, PRESTART_MS).unref();
  }

  /** A thread started ahead ends now if no connection took it (its mount failed before attaching). */
  cancelPrestart(): void {
    clearTimeout(this.prestarted);
    if (this.entries.size === 0) this.endAll();
  }

  private start(): void {
    this.wake?.();
    const slot = this.threads.length;
    const live = [...this.entries.values()].filter((e) => !e.ended);
    // The threads every connection keeps never end for idleness, but the last one may sleep.
    const kept = Math.max(1, ...live.map((e) => e.policy.min));
    const sleeps = slot === 0 && live.length > 0 && live.every((e) => maySleep(e.policy));
    // Every connection's policy read the same environment: the first one's tuning stands for all.
    const tuning = live[0]?.policy.tuning ?? [...this.entries.values()][0]!.policy.tuning;
    const t = this.launch(sleeps ? tuning.sleepMs : slot < kept ? 0 : Math.min(...live.map((e) => e.policy.idleMs)), tuning);
    for (const e of live) if (slot < e.policy.max) this.add(t, e, true);
  }

  private launch(idleMs: number, tuning: ThreadTuning, preload: string[] = []): ReaderThread {
    const t = new ReaderThread(this.bufferSize, idleMs, tuning, preload, this.soloFd >= 0, (th, e) => this.onEvent(th, e), (th, why) => this.onExit(th, why));
    this.threads.push(t);
    this.lastStart = Date.now();
    this.tellPeers();
    return t;
  }

  /** Every thread ends (no connection left, or none came for a thread started ahead). */
  private endAll(): void {
    this.endSolo();
    for (const th of this.threads.splice(0)) {
      th.leaving = true;
      this.leavingThreads.add(th);
      th.tell({ op: 'exit' });
    }
  }

  /** Every thread learns how many read (they take turns when more than one does); not urgent, solo reads go on. */
  private tellPeers(): void {
    for (const t of this.threads) t.tell({ op: 'peers', n: this.threads.length });
  }

  private onEvent(t: ReaderThread, e: ReaderEvent): void {
    switch (e.type) {
      case 'request':
        this.entries.get(e.id)?.callbacks.onRequest(Buffer.from(e.data));
        return;
      case 'warning':
        this.entries.get(e.id)?.callbacks.onWarning(e.message);
        return;
      case 'removed':
        this.letGo(t, e.id);
        return;
      case 'stopped':
        this.letGo(t, e.id, { code: e.code, message: e.message });
        return;
      case 'ready':
        t.ready = true;
        t.slice = e.slice;
        t.tid = e.tid;
        return;
      case 'busy': {
        // A queue one thread saw twice within BUSY_WINDOW_MS (a thread says 'busy' at most every
        // 50 ms; two threads seeing one burst are not twice): a lone burst of READs (a program's
        // start, the kernel's read-ahead) is over before a new thread (~80 ms of CPU, then its
        // compiling) could serve any of it.
        const now = Date.now();
        this.lastBusy = now;
        const again = now - t.lastBusy < BUSY_WINDOW_MS;
        t.lastBusy = now;
        // A parked thread reads again at the first (it costs no start: 8 random readers ran 5 %
        // faster than with it back at the second); a thread is started at the second.
        if (!this.unpark() && again) this.grow();
        return;
      }
      case 'stream':
        // A lone client's stream: a second thread to take turns with, no more.
        if (this.threads.length < 2) this.grow();
        return;
      case 'idle':
        t.idle = true;
        this.shrink();
        return;
      case 'active':
        t.idle = false;
        return;
      case 'lone':
        this.onLone();
        return;
      case 'parked':
        if (t.parked === 'asked' && e.seq === t.parkSeq) t.parked = 'yes';
        return;
    }
  }

  /**
   * No thread is added until the returned function is called (or `maxMs` passed): for work that
   * keeps the process's CPU busy, such as a profile's prefetch, during which another thread's start
   * would only take CPU from it. Only while no connection is open: a hold taken while one is, or
   * held when another opens, would keep that connection's load from the threads it needs; it is
   * not taken, or ends then.
   */
  holdGrowth(maxMs: number): () => void {
    if (this.entries.size > 0) return () => undefined;
    const hold = {};
    this.growthHolds.add(hold);
    const timer = setTimeout(() => this.growthHolds.delete(hold), maxMs).unref();
    return () => {
      clearTimeout(timer);
      this.growthHolds.delete(hold);
    };
  }

  /** Requests queue: one more thread, if a connection allows it, none is starting and none is held. */
  private grow(): void {
    const slot = this.threads.length;
    if (this.growthHolds.size > 0) return;
    if (this.threads.some((t) => !t.ready) || Date.now() - this.lastStart < 100) return;
    if (![...this.entries.values()].some((e) => !e.ended && slot < e.policy.max)) return;
    this.start();
  }

  /** Idle threads end, newest first, down to the threads a connection keeps. */
  private shrink(): void {
    for (;;) {
      const slot = this.threads.length - 1;
      const t = this.threads[slot];
      if (!t?.idle) return;
      if ([...this.entries.values()].some((e) => !e.ended && slot < e.policy.min && !(slot === 0 && maySleep(e.policy)))) return;
      // Ended solo first, while `t` is still among the threads it interrupts; a parked thread is not
      // blocked in read, and solo reads go on without it.
      if (t.parked === 'no') this.endSolo();
      this.threads.pop();
      t.leaving = true;
      this.leavingThreads.add(t);
      t.tell({ op: 'exit' });
      this.tellPeers();
    }
  }

  /** Thread `t` no longer touches connection `id` (and, with `why`, the connection ended). */
  private letGo(t: ReaderThread, id: number, why?: { code: string; message: string }): void {
    const e = this.entries.get(id);
    if (!e || !e.readers.delete(t)) return;
    if (why && !e.ended) {
      // Before the descriptor may be closed (onReleased): the pool touches it no more.
      if (this.soloFd === e.fd) this.endSolo();
      // One thread seeing the end ends the connection for all: the others let go of it.
      e.ended = why;
      e.callbacks.onStopped(why);
      for (const r of e.readers) this.tell(r, { op: 'remove', id });
    }
    if (e.ended && e.readers.size === 0) {
      this.entries.delete(id);
      e.callbacks.onReleased();
      if (this.entries.size === 0) {
        // The last connection is gone: the threads end (new ones start with the next mount).
        this.endAll();
      }
    }
  }

  private onExit(t: ReaderThread, why: string): void {
    this.leavingThreads.delete(t);
    const i = this.threads.indexOf(t);
    if (i >= 0) {
      this.threads.splice(i, 1);
      this.tellPeers();
    }
    const failure = t.leaving ? undefined : { code: 'EWORKER', message: why };
    for (const e of [...this.entries.values()]) {
      if (e.readers.has(t)) this.letGo(t, e.id, failure);
    }
    if (this.threads.length === 0 && [...this.entries.values()].some((e) => !e.ended)) this.sleep();
  }

  /** No thread: wait for a request on any live connection (or for start()), then start one. */
  private sleep(): void {
    if (this.wake) return;
    const libc = loadLibc();
    const opened: number[] = [];
    const closeAll = (): void => {
      for (const fd of opened.splice(0)) closeSync(fd);
    };
    let mine: (() => void) | undefined;
    try {
      const ep = libc.epollCreate();
      opened.push(ep);
      const [r, w] = libc.pipe();
      opened.push(r, w);
      libc.epollAdd(ep, r, false);
      for (const e of this.entries.values()) if (!e.ended) libc.epollAdd(ep, e.fd, false);
      mine = () => {
        if (this.wake === mine) this.wake = undefined;
        writeSync(w, WAKE);
      };
      const woken = (): void => {
        closeAll();
        // Only this wait's own wake is cleared: a later sleep may have set its own meanwhile.
        if (this.wake !== mine) return;
        this.wake = undefined;
        if (this.threads.length === 0 && [...this.entries.values()].some((e) => !e.ended)) this.start();
      };
      libc.epollWaitAsync(ep, -1).then(woken, woken);
      this.wake = mine;
    } catch {
      // No descriptors for the wait (EMFILE): stay awake rather than leave requests unread.
      closeAll();
      if (this.wake === mine) this.wake = undefined;
      this.start();
    }
  }
}

/** The process's one pool. */
export const readerPool = new ReaderPool();

