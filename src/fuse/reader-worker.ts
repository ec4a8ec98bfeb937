/**
 * Reads requests from /dev/fuse on its own thread: the read blocks until the kernel has a request,
 * which must not tie up the main thread or the libuv pool that the filesystem's own I/O needs.
 * Each request is copied out of the big read buffer into a buffer of its own, transferred (not
 * cloned) to the main thread.
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export interface ReaderWorkerData {
  fd: number;
  bufferSize: number;
}

/** What the worker tells the main thread when it stops reading. */
export interface ReaderStopped {
  type: 'stopped';
  /** ENODEV when the connection ended (unmount or abort); anything else is an error. */
  code: string;
  message: string;
}

const { fd, bufferSize } = workerData as ReaderWorkerData;
const port = parentPort;
if (!port) throw new Error('reader-worker must run as a worker thread');

const buf = Buffer.allocUnsafe(bufferSize);
for (;;) {
  let n: number;
  try {
    n = readSync(fd, buf, 0, buf.length, null);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: try again.
    if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') continue;
    const stopped: ReaderStopped = { type: 'stopped', code, message: (err as Error).message };
    port.postMessage(stopped);
    break;
  }
  if (n === 0) {
    port.postMessage({ type: 'stopped', code: 'ENODEV', message: 'end of file on /dev/fuse' } satisfies ReaderStopped);
    break;
  }
  const request = new ArrayBuffer(n);
  buf.copy(new Uint8Array(request), 0, 0, n);
  port.postMessage(request, [request]);
}
