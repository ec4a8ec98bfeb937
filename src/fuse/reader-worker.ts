/**
 * One thread reads the requests of every FUSE connection of the process: each descriptor is
 * non-blocking, read in turn while requests come, and the thread waits in poll(2) (with a pipe that
 * wakes it when descriptors come and go) only when none has one. One thread, not one per mount:
 * a worker thread costs about 8 MB, which a node with many images would pay per image.
 * Each request is copied out of the big read buffer into a buffer of its own and transferred
 * (not cloned) to the main thread.
 */
import { readSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { errnoName } from './errno.js';
import { EAGAIN, EINTR, ENODEV, ENOENT, loadLibc, POLLIN, type PollFd } from './libc.js';

export interface ReaderWorkerData {
  /** Read end of the pipe the main thread writes to after each control message. */
  wakeFd: number;
  bufferSize: number;
  /** Control messages (ReaderControl) come on this port. */
  control: MessagePort;
}

export type ReaderControl = { op: 'add'; id: number; fd: number } | { op: 'remove'; id: number } | { op: 'exit' };

/** What the thread tells the main thread. */
export type ReaderEvent =
  | { type: 'request'; id: number; data: ArrayBuffer }
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
const buf = Buffer.allocUnsafe(bufferSize);
const wakeBuf = Buffer.allocUnsafe(64);

/** Apply the control messages waiting; false once told to exit. */
function takeControl(): boolean {
  for (let m = receiveMessageOnPort(control); m; m = receiveMessageOnPort(control)) {
    const msg = m.message as ReaderControl;
    if (msg.op === 'exit') return false;
    if (msg.op === 'add') conns.set(msg.id, msg.fd);
    else conns.delete(msg.id);
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
    const code = errno === ENODEV ? 'ENODEV' : errnoName(errno);
    port!.postMessage({ type: 'stopped', id, code, message: `reading /dev/fuse: ${code}` } satisfies ReaderEvent);
    return true;
  }
  if (n === 0) {
    conns.delete(id);
    port!.postMessage({ type: 'stopped', id, code: 'ENODEV', message: 'end of file on /dev/fuse' } satisfies ReaderEvent);
    return true;
  }
  const data = new ArrayBuffer(n);
  buf.copy(new Uint8Array(data), 0, 0, n);
  port!.postMessage({ type: 'request', id, data } satisfies ReaderEvent, [data]);
  return true;
}

for (;;) {
  if (!takeControl()) break;
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
