/**
 * A reader thread: it reads one descriptor of every FUSE connection of the process (the device, or
 * its clone for this thread; channel.ts): each descriptor is non-blocking, read in turn while
 * requests come, and the thread waits in poll(2) (with a pipe that wakes it when descriptors come
 * and go) only when none has one. The process's few threads serve every mount, not one per mount:
 * a worker thread costs about 12 MB, which a node with many images would pay per image.
 * What the connection's filesystem answers here (sync-answers.ts) is answered on the same
 * descriptor; anything else is copied out of the big read buffer into a buffer of its own and
 * transferred (not cloned) to the main thread.
 */
import { readSync, writeSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { errnoName } from './errno.js';
import { Opcode, OUT_HEADER_SIZE, readInHeader, writeOutHeader } from './protocol.js';
import { answerRead, answerSync, type SyncAnswerOptions, type SyncFilesystem, type ThreadAnswers } from './sync-answers.js';
import { EAGAIN, EINTR, ENODEV, ENOENT, loadLibc, POLLIN, type PollFd } from './libc.js';

export interface ReaderWorkerData {
  /** Read end of the pipe the main thread writes to after each control message. */
  wakeFd: number;
  bufferSize: number;
  /** Control messages (ReaderControl) come on this port. */
  control: MessagePort;
}

/** Requests of a connection answered here: how to build its filesystem, and what the server answers with. */
export interface ThreadAnswering {
  answers: ThreadAnswers;
  options: SyncAnswerOptions;
  /** Requests answered here, by opcode (Atomics), for the server's counts. */
  counts: Int32Array;
}

export type ReaderControl = { op: 'add'; id: number; fd: number; answering?: ThreadAnswering } | { op: 'remove'; id: number } | { op: 'exit' };

/** What the thread tells the main thread. */
export type ReaderEvent =
  | { type: 'request'; id: number; data: ArrayBuffer }
  | { type: 'warning'; id: number; message: string }
  /** A connection removed on the main thread's word: this thread no longer touches its descriptor. */
  | { type: 'removed'; id: number }
  | {
    /** The thread stopped reading a connection: ENODEV when it ended (unmount or abort); anything else is an error. */
    type: 'stopped';
    id: number;
    code: string;
    message: string;
  };

const { wakeFd, bufferSize, control } = workerData as ReaderWorkerData;
const port = parentPort;
if (!port) throw new Error('reader-worker must run as a worker thread');
const libc = loadLibc();

const conns = new Map<number, number>(); // id → fd
const answering = new Map<number, { fs: SyncFilesystem; options: SyncAnswerOptions; counts: Int32Array }>();
const buf = Buffer.allocUnsafe(bufferSize);
const wakeBuf = Buffer.allocUnsafe(64);
/** READ replies built here (header, then the bytes read straight into it); made on first use. */
let replyBuf: Buffer | undefined;

/**
 * Apply the control messages waiting; false once told to exit, a promise while a connection's
 * answering module loads (the requests wait in the kernel meanwhile).
 */
function takeControl(): boolean | Promise<boolean> {
  const loads: Promise<void>[] = [];
  for (let m = receiveMessageOnPort(control); m; m = receiveMessageOnPort(control)) {
    const msg = m.message as ReaderControl;
    if (msg.op === 'exit') return false;
    if (msg.op === 'remove') {
      dropAnswering(msg.id);
      if (conns.delete(msg.id)) port!.postMessage({ type: 'removed', id: msg.id } satisfies ReaderEvent);
      continue;
    }
    conns.set(msg.id, msg.fd);
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
  const body = typeof reply === 'number' ? 0 : reply.length;
  const msg = Buffer.allocUnsafe(OUT_HEADER_SIZE + body);
  writeOutHeader(msg, msg.length, -errno, h.unique);
  if (body) msg.set(reply as Uint8Array, OUT_HEADER_SIZE);
  try {
    writeSync(fd, msg);
  } catch {
    // ENOENT: interrupted meanwhile; ENODEV: the connection ended (its read says so next)
  }
  return true;
}

function answerReadHere(a: { fs: SyncFilesystem; counts: Int32Array }, h: ReturnType<typeof readInHeader>, req: Buffer, fd: number): boolean {
  if (!a.fs.read) return false;
  replyBuf ??= Buffer.allocUnsafeSlow(bufferSize);
  const len = answerRead(a.fs, h, req, replyBuf);
  if (len < 0) return false;
  Atomics.add(a.counts, Opcode.READ, 1);
  try {
    writeSync(fd, replyBuf, 0, len);
  } catch {
    // ENOENT: interrupted meanwhile; ENODEV: the connection ended (its read says so next)
  }
  return true;
}

/** Read one request from `fd`; true if one came (or the connection stopped), false on EAGAIN. */
function readOne(id: number, fd: number): boolean {
  const n = libc.read(fd, buf);
  if (n < 0) {
    const errno = -n;
    if (errno === EAGAIN) return false;
    // ENOENT: the request was interrupted before we read it; EINTR: try again.
    if (errno === ENOENT || errno === EINTR) return true;
    conns.delete(id);
    dropAnswering(id);
    const code = errno === ENODEV ? 'ENODEV' : errnoName(errno);
    port!.postMessage({ type: 'stopped', id, code, message: `reading /dev/fuse: ${code}` } satisfies ReaderEvent);
    return true;
  }
  if (n === 0) {
    conns.delete(id);
    dropAnswering(id);
    port!.postMessage({ type: 'stopped', id, code: 'ENODEV', message: 'end of file on /dev/fuse' } satisfies ReaderEvent);
    return true;
  }
  if (answerHere(id, fd, n)) return true;
  const data = new ArrayBuffer(n);
  buf.copy(new Uint8Array(data), 0, 0, n);
  port!.postMessage({ type: 'request', id, data } satisfies ReaderEvent, [data]);
  return true;
}

for (;;) {
  const taken = takeControl();
  if (!(taken === true || (taken !== false && (await taken)))) break;
  // Serve whoever has requests, one each in turn, until none has.
  let busy = true;
  while (busy) {
    busy = false;
    for (const [id, fd] of conns) if (readOne(id, fd)) busy = true;
  }
  const fds: PollFd[] = [{ fd: wakeFd, events: POLLIN, revents: 0 }];
  for (const fd of conns.values()) fds.push({ fd, events: POLLIN, revents: 0 });
  libc.poll(fds, fds.length, -1);
  if (fds[0]!.revents) {
    try {
      readSync(wakeFd, wakeBuf, 0, wakeBuf.length, null);
    } catch {
      // EAGAIN: another wake-up took the bytes
    }
  }
  // A connection that ended shows as POLLERR/POLLHUP: its read then says ENODEV.
}
