/**
 * A reader thread: it reads the descriptor of every FUSE connection of the process (reader-pool.ts;
 * the other threads read the same descriptors): each descriptor is non-blocking, read in turn while
 * requests come, and the thread waits in epoll_wait(2) (with a pipe that wakes it when descriptors
 * come and go) only when none has one. Each thread watches the descriptors with EPOLLEXCLUSIVE: a
 * request wakes one waiting thread, the oldest first, not every thread (poll(2) would wake all, each
 * to find nothing but the one that read it), so an added thread serves only when the others are
 * busy, and goes idle once the load is gone. The process's few threads serve every mount, not one per mount:
 * a worker thread costs about 10 MB, which a node with many images would pay per image. It tells
 * the pool when it finds requests queued (another thread may help) and, if it may end, when it has
 * served nothing for a while.
 * What the connection's filesystem answers here (sync-answers.ts) is answered on the same
 * descriptor; anything else is copied out of the big read buffer into a buffer of its own and
 * transferred (not cloned) to the main thread.
 */
import { writeSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { errnoName } from './errno.js';
import { IN_HEADER_SIZE, Opcode, OUT_HEADER_SIZE, readInHeader, writeReplyHeader } from './protocol.js';
import { Splicer } from './splice.js';
import { answerRead, answerSync, type SyncAnswerOptions, type SyncFilesystem, type ThreadAnswers } from './sync-answers.js';
import { EAGAIN, EINTR, ENODEV, ENOENT, loadLibc } from './libc.js';
import { POSTED, SERVED, SOLO, TID } from './solo-reads.js';

export interface ReaderWorkerData {
  /** Read end of the pipe the main thread writes to after each control message. */
  wakeFd: number;
  bufferSize: number;
  /** Say 'idle' after serving nothing for this long; 0: never (a thread the pool always keeps). */
  idleMs: number;
  /** Control messages (ReaderControl) come on this port. */
  control: MessagePort;
  /** The scheduler slice this thread asks for, in ns (0: the kernel's default); see threadTuning(). */
  sliceNs: number;
  /** Take turns with the other threads on a stream of requests, and say 'stream' (CLIP_FUSE_TURNS=1). */
  turns: boolean;
  /** Requests a second that make a stream (threadTuning()). */
  streamRate: number;
  /** Modules to load before reading (a thread started ahead of its first connection: its answering module). */
  preload?: string[];
  /** Words shared with the pool (solo-reads.ts: SharedArrayBuffer). */
  words: Int32Array;
}

/** Requests of a connection answered here: how to build its filesystem, and what the server answers with. */
export interface ThreadAnswering {
  answers: ThreadAnswers;
  options: SyncAnswerOptions;
  /** Requests answered here, by opcode (Atomics), for the server's counts. */
  counts: Int32Array;
}

export type ReaderControl =
  | { op: 'add'; id: number; fd: number; answering?: ThreadAnswering }
  | { op: 'remove'; id: number }
  /** How many threads read now: more than one take turns on a stream (see rotate()). */
  | { op: 'peers'; n: number }
  /** Stop reading the descriptors until 'unpark' (solo reads: one thread serves a lone client); say 'parked' with `seq`. */
  | { op: 'park'; seq: number }
  | { op: 'unpark' }
  | { op: 'exit' };

/** What the thread tells the main thread. */
export type ReaderEvent =
  | { type: 'request'; id: number; data: ArrayBuffer }
  | { type: 'warning'; id: number; message: string }
  /** The modules of the connections given so far are loaded: the thread reads. `slice`: what setSlice said; `tid`: its thread id. */
  | { type: 'ready'; slice: number; tid: number }
  /** Requests were queued behind the one read: another thread would help. */
  | { type: 'busy' }
  /** Requests come one at a time but without pause (STREAM_RATE a second): a second thread to take turns with would help. */
  | { type: 'stream' }
  /** Nothing served for idleMs. */
  | { type: 'idle' }
  /** Serving again after an 'idle'. */
  | { type: 'active' }
  /** Requests come one at a time (a lone client): reading blocking would save a system call each (solo-reads.ts). */
  | { type: 'lone' }
  /** Park `seq` done: the descriptors are out of the epoll set and were read until EAGAIN. */
  | { type: 'parked'; seq: number }
  /** A connection removed on the main thread's word: this thread no longer touches its descriptor. */
  | { type: 'removed'; id: number }
  | {
    /** The thread stopped reading a connection: ENODEV when it ended (unmount or abort); anything else is an error. */
    type: 'stopped';
    id: number;
    code: string;
    message: string;
  };

const { wakeFd, bufferSize, idleMs, control, sliceNs, turns: TURNS, streamRate: STREAM_RATE, preload, words } = workerData as ReaderWorkerData;
/**
 * Requests answered in the thread in one wake-up (read to EAGAIN) from which it says it is busy.
 * Requests it hands to the main thread do not count: while they are the load (a cold start's
 * misses) the main thread is what they wait for, and another reader thread would only take CPU
 * from it (~80 ms to start, then its own compiling; bench/index/RESULTS.md, session 17).
 */
const BUSY_BURST = 4;
/** At most one 'busy' per this many ms. */
const BUSY_EVERY_MS = 50;
/**
 * After this many wake-ups in a row with one request and nothing queued behind it (a client
 * asking one thing at a time: lstat, getxattr, a single reader's preads), the thread reads once
 * per wake-up instead of again until EAGAIN: the read that finds nothing was one system call in
 * four of such a request. Every PROBE_EVERY-th wake-up reads until EAGAIN again, so a queue
 * that builds up (and the 'busy' it should cause) is seen within that many requests.
 */
const SINGLES_BEFORE_ONE_READ = 8;
const PROBE_EVERY = 16;
const port = parentPort;
if (!port) throw new Error('reader-worker must run as a worker thread');
const libc = loadLibc();
// Before any read: the pool signals the threads whose id it sees (solo-reads.ts); cleared at the
// end, so that a thread id the kernel gives out again is not signalled.
Atomics.store(words, TID, libc.gettid());
process.once('exit', () => Atomics.store(words, TID, 0));
// A short slice: woken by a request while the CPU runs something else, the thread gets an early
// deadline and runs within about this long, instead of after the other task's whole slice (ms
// under load: the one-request-at-a-time rows' tails). Its share of the CPU is unchanged.
const slice = sliceNs > 0 ? libc.setSlice(sliceNs) : 0;

const conns = new Map<number, number>(); // id → fd
const ep = libc.epollCreate();
libc.epollAdd(ep, wakeFd, false);
const answering = new Map<number, { fs: SyncFilesystem; options: SyncAnswerOptions; counts: Int32Array }>();
const buf = Buffer.allocUnsafe(bufferSize);
const wakeBuf = Buffer.allocUnsafe(64);
/** READs from this size on are spliced (below it the pread and write of a small reply cost less). */
const SPLICE_FROM = 64 * 1024;
/** Threads reading now (the pool says). */
let peers = 1;
/**
 * Requests came at half STREAM_RATE or more (all threads together, as this thread's rate times
 * the threads) in the last second: the threads take turns, each going to the back of the line
 * after serving (rotate()). Not at a lower rate: every thread would live on, serving a request
 * now and then, where without turns the oldest serves them and the added ones end when idle.
 */
let streaming = true;
/** Told to park: the descriptors are out of the epoll set and not read (solo-reads.ts). */
let parked = false;
/** The park to say 'parked' for once the queue is read (-1: none). */
let parkSeq = -1;
/** Made on first use; null: splicing failed to set up here (a pipe too small), never tried again. */
let splicer: Splicer | undefined | null;
/** Replies built here (header, then the answer, or a READ's bytes read straight into it); made on first use. */
let replyBuf: Buffer | undefined;

/**
 * Apply the control messages waiting; false once told to exit, a promise while a connection's
 * answering module loads (the requests wait in the kernel meanwhile).
 */
function takeControl(): boolean | Promise<boolean> {
  // Read before the port: a message posted after this load counts as not taken yet.
  takenCount = Atomics.load(words, POSTED);
  const loads: Promise<void>[] = [];
  for (let m = receiveMessageOnPort(control); m; m = receiveMessageOnPort(control)) {
    const msg = m.message as ReaderControl;
    if (msg.op === 'exit') {
      for (const id of [...answering.keys()]) dropAnswering(id); // its descriptors are the process's
      return false;
    }
    if (msg.op === 'peers') {
      peers = msg.n;
      continue;
    }
    if (msg.op === 'park') {
      if (!parked) for (const fd of conns.values()) libc.epollDel(ep, fd);
      parked = true;
      parkSeq = msg.seq;
      continue;
    }
    if (msg.op === 'unpark') {
      if (parked) for (const fd of conns.values()) libc.epollAdd(ep, fd, true);
      parked = false;
      parkSeq = -1;
      continue;
    }
    if (msg.op === 'remove') {
      dropAnswering(msg.id);
      if (unwatch(msg.id)) port!.postMessage({ type: 'removed', id: msg.id } satisfies ReaderEvent);
      continue;
    }
    conns.set(msg.id, msg.fd);
    if (!parked) libc.epollAdd(ep, msg.fd, true);
    const a = msg.answering;
    if (a) {
      loads.push(
        (import(a.answers.module) as Promise<{ createSyncFilesystem(data: unknown): SyncFilesystem }>).then(
          (mod) => void answering.set(msg.id, { fs: mod.createSyncFilesystem(a.answers.data), options: a.options, counts: a.counts }),
          // Not fatal: the main thread answers everything for this connection.
          (err: unknown) => port!.postMessage({ type: 'warning', id: msg.id, message: `cannot answer in the reader thread: ${(err as Error).message}` } satisfies ReaderEvent),
        ),
      );
    }
  }
  return loads.length ? Promise.all(loads).then(() => true) : true;
}

/**
 * Go to the back of the line of threads waiting for requests: a request wakes the first waiting
 * thread in the order they began to watch the descriptor (EPOLLEXCLUSIVE), so without this the
 * oldest thread serves a lone client's every request. Watched again from the back, the threads
 * take turns, as threads blocked in read(2) do (go-fuse, libfuse): each uses a share of the CPU
 * the scheduler grants without making it wait. A request that comes between the two calls is
 * seen by the add (epoll checks the descriptor) or by another thread.
 */
function rotate(fd: number): void {
  libc.epollDel(ep, fd);
  libc.epollAdd(ep, fd, true);
}

/** Stop watching connection `id` (before the main thread may close its descriptor); false if not watched. */
function unwatch(id: number): boolean {
  const fd = conns.get(id);
  if (fd === undefined) return false;
  if (!parked) libc.epollDel(ep, fd);
  conns.delete(id);
  return true;
}

function dropAnswering(id: number): void {
  try {
    answering.get(id)?.fs.close?.();
  } catch {
    // nothing more to release
  }
  answering.delete(id);
}

/** Answer the request in `buf[0, n)` here if its connection's filesystem can; true when it did. */
function answerHere(id: number, fd: number, n: number): boolean {
  const a = answering.get(id);
  if (!a) return false;
  const req = buf.subarray(0, n);
  const h = readInHeader(req);
  if (h.opcode === Opcode.READ) return answerReadHere(a, h, req, fd);
  const reply = answerSync(a.fs, h, req, a.options);
  if (reply === undefined) return false;
  Atomics.add(a.counts, h.opcode & 63, 1);
  const errno = typeof reply === 'number' ? reply : 0;
  const len = OUT_HEADER_SIZE + (typeof reply === 'number' ? 0 : reply.length);
  // Built in the thread's reply buffer: no buffer per request.
  const msg = len <= bufferSize ? (replyBuf ??= Buffer.allocUnsafeSlow(bufferSize)) : Buffer.allocUnsafe(len);
  writeReplyHeader(msg, len, -errno, req);
  if (typeof reply !== 'number') msg.set(reply, OUT_HEADER_SIZE);
  try {
    writeSync(fd, msg, 0, len);
  } catch {
    // ENOENT: interrupted meanwhile; ENODEV: the connection ended (its read says so next)
  }
  return true;
}

function answerReadHere(a: { fs: SyncFilesystem; counts: Int32Array }, h: ReturnType<typeof readInHeader>, req: Buffer, fd: number): boolean {
  if (!a.fs.read) return false;
  if (a.fs.readRange && req.readUInt32LE(IN_HEADER_SIZE + 16) >= SPLICE_FROM && spliceReply(a.fs, h, req, fd)) {
    Atomics.add(a.counts, Opcode.READ, 1);
    a.fs.afterRead?.();
    return true;
  }
  replyBuf ??= Buffer.allocUnsafeSlow(bufferSize);
  const len = answerRead(a.fs, h, req, replyBuf);
  if (len < 0) return false;
  Atomics.add(a.counts, Opcode.READ, 1);
  try {
    writeSync(fd, replyBuf, 0, len);
  } catch {
    // ENOENT: interrupted meanwhile; ENODEV: the connection ended (its read says so next)
  }
  a.fs.afterRead?.();
  return true;
}

/** A big READ's reply spliced from the file (splice.ts); false: not sent, answer it another way. */
function spliceReply(fs: SyncFilesystem, h: ReturnType<typeof readInHeader>, req: Buffer, fd: number): boolean {
  if (splicer === null) return false;
  if (!splicer) {
    try {
      splicer = new Splicer();
    } catch {
      splicer = null;
      return false;
    }
  }
  const offset = req.readUInt32LE(IN_HEADER_SIZE + 8) + req.readUInt32LE(IN_HEADER_SIZE + 12) * 2 ** 32;
  let range: ReturnType<NonNullable<SyncFilesystem['readRange']>>;
  try {
    range = fs.readRange!(Number(h.nodeid), offset, req.readUInt32LE(IN_HEADER_SIZE + 16));
  } catch {
    return false; // (an unknown node, say) answered the ordinary way, which says why
  }
  if (!range || range.length === 0) return false;
  return splicer.send(fd, h.unique, range.fd, range.position, range.length, range.valid);
}

/** Requests this wake-up answered in the thread (readOne counts them). */
let answeredHere = 0;
/** Control messages taken (POSTED when the port was last drained). */
let takenCount = 0;
/** Requests read while solo, for the probe. */
let soloReads = 0;
let lastQueued = 0;
/** Probes in a row that found no queue (solo). */
let quietProbes = 0;

/**
 * Solo, every PROBE_EVERY-th request: is another queued behind the one just read? Asked before
 * answering it, when a lone client cannot have sent its next one yet, so only a real queue shows.
 */
function probeQueue(fd: number): boolean {
  let queued = false;
  const fired = libc.epollWait(ep, 0);
  for (let i = 0; i < fired; i++) {
    const ready = libc.readyFd(i);
    if (ready === wakeFd) {
      woken = true;
      libc.read(wakeFd, wakeBuf);
    } else if (ready === fd) queued = true;
  }
  return queued;
}

/** A queue seen twice within the window, behind requests answered here, makes a 'busy' (the pool may add a thread). */
function noteQueue(): void {
  const now = Date.now();
  if (now - lastQueued < BUSY_EVERY_MS * 2 && now - lastBusy >= BUSY_EVERY_MS) {
    lastBusy = now;
    port!.postMessage({ type: 'busy' } satisfies ReaderEvent);
  }
  lastQueued = now;
}

/** Read one request from `fd`; true if one came (or the connection stopped), false on EAGAIN. */
function readOne(id: number, fd: number): boolean {
  const n = libc.read(fd, buf);
  if (n < 0) {
    const errno = -n;
    if (errno === EAGAIN) return false;
    // ENOENT: the request was interrupted before we read it; EINTR: try again.
    if (errno === ENOENT || errno === EINTR) return true;
    unwatch(id);
    dropAnswering(id);
    const code = errno === ENODEV ? 'ENODEV' : errnoName(errno);
    port!.postMessage({ type: 'stopped', id, code, message: `reading /dev/fuse: ${code}` } satisfies ReaderEvent);
    return true;
  }
  if (n === 0) {
    unwatch(id);
    dropAnswering(id);
    port!.postMessage({ type: 'stopped', id, code: 'ENODEV', message: 'end of file on /dev/fuse' } satisfies ReaderEvent);
    return true;
  }
  let queued = false;
  if (solo) {
    Atomics.add(words, SERVED, 1);
    // Serving while solo never gets back to the loop's own 'active' (a parked thread read again).
    if (saidIdle) {
      saidIdle = false;
      port!.postMessage({ type: 'active' } satisfies ReaderEvent);
    }
    if (++soloReads % PROBE_EVERY === 0) {
      queued = probeQueue(fd);
      // A lone client (8 probes, 128 requests, without a queue; said again every 128): one thread would do (the pool parks the others).
      if (queued) quietProbes = 0;
      else if (++quietProbes % SINGLES_BEFORE_ONE_READ === 0) port!.postMessage({ type: 'lone' } satisfies ReaderEvent);
    }
  }
  // Nor do big READs: a stream's READs queue behind each other, and one thread serves a stream
  // best (the kernel reads ahead in the cache file for one reader; bench/mount/RESULTS.md,
  // sessions 12 and 18), where queued small READs want their disk reads side by side.
  const big = queued && buf.readUInt32LE(4) === Opcode.READ && buf.readUInt32LE(IN_HEADER_SIZE + 16) >= SPLICE_FROM;
  if (answerHere(id, fd, n)) {
    answeredHere++;
    // Requests handed to the main thread do not count (BUSY_BURST).
    if (queued && !big) noteQueue();
    return true;
  }
  const data = new ArrayBuffer(n);
  buf.copy(new Uint8Array(data), 0, 0, n);
  port!.postMessage({ type: 'request', id, data } satisfies ReaderEvent, [data]);
  return true;
}

// Loaded now, while no connection waits: the thread blocks in epoll_wait later, and an import then
// would wait for the first connection's add. A module that fails to load fails there again, loudly.
if (preload?.length) await Promise.all(preload.map((m) => import(m).catch(() => undefined)));

let ready = false;
/** The pool has the descriptor blocking (SOLO): read until EAGAIN, which comes only once it is not. */
let solo = false;
let lastServed = Date.now();
let lastBusy = 0;
/** 'idle' said, and nothing served since. */
let saidIdle = false;
/** The wake pipe said a control message came (the first pass looks anyway). */
let woken = true;
/** The last epoll_wait was interrupted by a signal (not counted as a wake-up). */
let interrupted = false;
/** Wake-ups in a row that found at most one request (read until EAGAIN). */
let singles = 0;
let wakeups = 0;
/** Requests served since `windowStart` (for 'stream'). */
let windowCount = 0;
let windowStart = Date.now();
let lastStream = 0;
/** Descriptors served in this wake-up, while taking turns. */
const servedFds: number[] = [];
for (;;) {
  if (woken) {
    woken = false;
    const taken = takeControl();
    if (!(taken === true || (taken !== false && (await taken)))) break;
  }
  if (!ready) {
    ready = true;
    port.postMessage({ type: 'ready', slice, tid: libc.gettid() } satisfies ReaderEvent);
  }
  if (parkSeq >= 0) {
    // Parked: what is queued is read first (this thread's epoll entry may have taken a request's
    // wake-up). The descriptor is non-blocking until the pool has this 'parked'.
    for (const [id, fd] of conns) while (conns.has(id) && readOne(id, fd));
    port.postMessage({ type: 'parked', seq: parkSeq } satisfies ReaderEvent);
    parkSeq = -1;
  }
  // Serve whoever has requests, one each in turn, until none has; or, while requests come one at
  // a time, one read each and back to epoll_wait, which returns at once if another is queued.
  solo = Atomics.load(words, SOLO) === 1;
  const wasSolo = solo;
  const greedy = solo || singles < SINGLES_BEFORE_ONE_READ || ++wakeups % PROBE_EVERY === 0;
  let served = 0;
  answeredHere = 0;
  let busy = true;
  while (busy && !parked) {
    busy = false;
    for (const [id, fd] of conns) {
      // A message posted: take it before a read that may block (solo-reads.ts).
      if (solo && (woken || Atomics.load(words, POSTED) !== takenCount)) {
        woken = true;
        busy = false;
        break;
      }
      if (readOne(id, fd)) {
        busy = greedy;
        served++;
        if (TURNS && peers > 1 && streaming && !servedFds.includes(fd)) servedFds.push(fd);
      }
    }
  }
  solo = false;
  // A lone client still there after solo ends says so again after SINGLES_BEFORE_ONE_READ wake-ups.
  if (wasSolo) singles = 0;
  else if (greedy && !parked && !interrupted) {
    singles = served <= 1 ? singles + 1 : 0;
    // Not while taking turns: a stream's turns are decided after each wake-up, which solo reads have not.
    // Said again every 8 of the probing wake-ups that follow (every 128 wake-ups) while it lasts.
    if (singles > 0 && singles % SINGLES_BEFORE_ONE_READ === 0 && !TURNS) port.postMessage({ type: 'lone' } satisfies ReaderEvent);
  }
  const now = Date.now();
  if (served > 0) {
    lastServed = now;
    if (saidIdle) {
      saidIdle = false;
      port.postMessage({ type: 'active' } satisfies ReaderEvent);
    }
  }
  if (!wasSolo && answeredHere >= BUSY_BURST && now - lastBusy >= BUSY_EVERY_MS) {
    lastBusy = now;
    port.postMessage({ type: 'busy' } satisfies ReaderEvent);
  }
  windowCount += served;
  if (now - windowStart >= 1000) {
    const rate = windowCount / ((now - windowStart) / 1000);
    streaming = rate * peers >= STREAM_RATE / 2;
    if (TURNS && peers === 1 && rate >= STREAM_RATE && now - lastStream >= 1000) {
      lastStream = now;
      port.postMessage({ type: 'stream' } satisfies ReaderEvent);
    }
    windowStart = now;
    windowCount = 0;
  }
  // Only the descriptors this thread served: the others' lines are as they were.
  for (const fd of servedFds.splice(0)) if ([...conns.values()].includes(fd)) rotate(fd);
  let timeout = -1;
  if (idleMs > 0) {
    timeout = idleMs - (now - lastServed);
    if (timeout <= 0) {
      if (!saidIdle) port.postMessage({ type: 'idle' } satisfies ReaderEvent);
      saidIdle = true;
      lastServed = now;
      timeout = idleMs;
    }
  }
  // A message seen while solo (the probe may have emptied the pipe): taken before waiting.
  if (woken) continue;
  const fired = libc.epollWait(ep, timeout);
  // EINTR: the pool's signal (solo-reads.ts) also reaches a thread waiting here; not a request's wake-up.
  interrupted = fired < 0;
  // The pipe and the control port only when the pipe woke us: a request's wake-up goes straight to
  // its read (two calls fewer per request). The pipe is this thread's own, written after each
  // message; a pipe not yet empty after one read wakes the next wait at once.
  for (let i = 0; i < fired; i++) if (libc.readyFd(i) === wakeFd) woken = true;
  if (woken) libc.read(wakeFd, wakeBuf);
  // A connection that ended shows as EPOLLERR/EPOLLHUP: its read then says ENODEV.
}
libc.close(ep);
splicer?.close();
