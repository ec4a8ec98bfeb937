import { writeSync, writevSync } from 'node:fs';
import type { Logger } from '../util/log.js';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import { readerPool, type ReaderPolicy } from './reader-pool.js';
import type { ThreadAnswering } from './reader-worker.js';

/** Payloads smaller than this are copied behind the header; larger ones go out with writev. */
const COPY_LIMIT = 16 * 1024;

/**
 * One open /dev/fuse: requests come in from the process's reader threads (reader-pool.ts), which
 * all read this one descriptor; replies go out from the main thread (or the thread that answered)
 * with a single write each (the kernel takes a reply only whole; writes to /dev/fuse never block).
 */
export class FuseChannel {
  readonly fd: number;
  /** Settles when no reader thread reads any more: ENODEV after an unmount or abort, another code on error. */
  readonly stopped: Promise<{ code: string; message: string }>;
  private connected = true;
  private readonly pooled: { readers(): number };

  /** Requests the reader threads answered themselves, by opcode (when they answer some). */
  readonly answeredHere: Int32Array | undefined;

  constructor(
    fd: number,
    bufferSize: number,
    onRequest: (req: Buffer) => void,
    private readonly log: Logger,
    answering: Omit<ThreadAnswering, 'counts'> | undefined,
    policy: ReaderPolicy,
  ) {
    this.fd = fd;
    this.answeredHere = answering ? new Int32Array(new SharedArrayBuffer(64 * 4)) : undefined;
    const threadAnswering = answering && this.answeredHere ? { ...answering, counts: this.answeredHere } : undefined;
    let first: { code: string; message: string } | undefined;
    let released!: () => void;
    const done = new Promise<void>((r) => (released = r));
    this.pooled = readerPool.open(fd, bufferSize, policy, {
      onRequest,
      onStopped: (why) => {
        first = why;
        this.connected = false;
      },
      onWarning: (message) => log.warn({ fd }, message),
      onReleased: () => released(),
    }, threadAnswering);
    this.stopped = done.then(() => first ?? { code: 'ENODEV', message: 'FUSE readers stopped' });
  }

  /** Reader threads reading this connection now. */
  get readers(): number {
    return this.pooled.readers();
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
    const fd = this.fd;
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
        writeSync(fd, msg);
      } else {
        const header = Buffer.allocUnsafe(OUT_HEADER_SIZE);
        writeOutHeader(header, OUT_HEADER_SIZE + bodyLen, -error, unique);
        writevSync(fd, [header, ...parts]);
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
