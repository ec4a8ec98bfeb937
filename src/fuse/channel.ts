import { writeSync, writevSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import { siblingModule, startWorker } from '../util/worker.js';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import type { ReaderStopped, ReaderWorkerData } from './reader-worker.js';

/** Payloads smaller than this are copied behind the header; larger ones go out with writev. */
const COPY_LIMIT = 16 * 1024;

/**
 * One open /dev/fuse: requests come in from a reader thread, replies go out from the main thread
 * with a single write each (the kernel takes a reply only whole, and writes to /dev/fuse never block).
 */
export class FuseChannel {
  readonly fd: number;
  /** Settles when the reader has stopped: ENODEV after an unmount or abort, another code on error. */
  readonly stopped: Promise<{ code: string; message: string }>;
  private readonly worker: Worker;
  private connected = true;

  constructor(fd: number, bufferSize: number, onRequest: (req: Buffer) => void, private readonly log: Logger) {
    this.fd = fd;
    const data: ReaderWorkerData = { fd, bufferSize };
    this.worker = startWorker(siblingModule(import.meta.url, 'reader-worker'), { workerData: data });
    let reason: { code: string; message: string } | undefined;
    this.worker.on('message', (msg: ArrayBuffer | ReaderStopped) => {
      if (msg instanceof ArrayBuffer) onRequest(Buffer.from(msg));
      else reason = { code: msg.code, message: msg.message };
    });
    this.stopped = new Promise((resolve) => {
      this.worker.on('error', (err) => {
        reason ??= { code: 'EWORKER', message: err.message };
      });
      this.worker.on('exit', () => {
        this.connected = false;
        resolve(reason ?? { code: 'EWORKER', message: 'reader thread exited' });
      });
    });
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /**
   * Send a notification (`code` from NotifyCode). Returns the errno the kernel answered, 0 when it
   * took it: ENOSYS or EINVAL from a kernel that does not know the code.
   */
  notify(code: number, payload: Uint8Array = new Uint8Array(0)): number {
    const msg = Buffer.allocUnsafe(OUT_HEADER_SIZE + payload.length);
    writeOutHeader(msg, msg.length, code, 0n);
    msg.set(payload, OUT_HEADER_SIZE);
    try {
      writeSync(this.fd, msg);
      return 0;
    } catch (err) {
      return -((err as NodeJS.ErrnoException).errno ?? -5);
    }
  }

  /** Send a reply; `error` is a positive errno or 0. */
  reply(unique: bigint, error: number, payload?: Uint8Array | readonly Uint8Array[]): void {
    if (!this.connected) return;
    const parts = payload === undefined ? [] : payload instanceof Uint8Array ? [payload] : payload;
    let bodyLen = 0;
    for (const p of parts) bodyLen += p.length;
    try {
      if (bodyLen <= COPY_LIMIT) {
        const msg = Buffer.allocUnsafe(OUT_HEADER_SIZE + bodyLen);
        writeOutHeader(msg, msg.length, -error, unique);
        let pos = OUT_HEADER_SIZE;
        for (const p of parts) {
          msg.set(p, pos);
          pos += p.length;
        }
        writeSync(this.fd, msg);
      } else {
        const header = Buffer.allocUnsafe(OUT_HEADER_SIZE);
        writeOutHeader(header, OUT_HEADER_SIZE + bodyLen, -error, unique);
        writevSync(this.fd, [header, ...parts]);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT: the request was interrupted or aborted meanwhile; nobody waits for this reply.
      if (code === 'ENOENT') return;
      if (code === 'ENODEV' || code === 'ENOTCONN' || code === 'EBADF') {
        this.connected = false;
        return;
      }
      this.log.warn({ err, unique: unique.toString(), error }, 'fuse: writing a reply failed');
    }
  }
}
