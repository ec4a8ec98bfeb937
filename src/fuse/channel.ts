import { closeSync, writeSync, writevSync } from 'node:fs';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import type { Logger } from '../util/log.js';
import { siblingModule, startWorker } from '../util/worker.js';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import { loadLibc } from './libc.js';
import type { ReaderControl, ReaderEvent, ReaderWorkerData, ThreadAnswering } from './reader-worker.js';

/** Payloads smaller than this are copied behind the header; larger ones go out with writev. */
const COPY_LIMIT = 16 * 1024;

interface Connection {
  onRequest: (req: Buffer) => void;
  onStopped: (why: { code: string; message: string }) => void;
  onWarning: (message: string) => void;
}

/**
 * The process's one reader thread (reader-worker.ts), shared by every open /dev/fuse: started with
 * the first connection, ended with the last.
 */
class ReaderThread {
  private static current: ReaderThread | undefined;
  private readonly worker: Worker;
  private readonly control: MessagePort;
  private readonly wakeWrite: number;
  private readonly conns = new Map<number, Connection>();
  private nextId = 1;
  private closed = false;

  static get(bufferSize: number): ReaderThread {
    if (!ReaderThread.current || ReaderThread.current.bufferSize < bufferSize) {
      if (ReaderThread.current?.conns.size) {
        throw new Error(`the FUSE reader thread reads at most ${ReaderThread.current.bufferSize} bytes a request; ${bufferSize} asked`);
      }
      ReaderThread.current = new ReaderThread(bufferSize);
    }
    return ReaderThread.current;
  }

  private constructor(readonly bufferSize: number) {
    const libc = loadLibc();
    const [wakeRead, wakeWrite] = libc.pipe();
    libc.setNonBlocking(wakeRead);
    this.wakeWrite = wakeWrite;
    const { port1, port2 } = new MessageChannel();
    this.control = port1;
    const data: ReaderWorkerData = { wakeFd: wakeRead, bufferSize, control: port2 };
    this.worker = startWorker(siblingModule(import.meta.url, 'reader-worker'), { workerData: data, transferList: [port2] });
    this.worker.on('message', (msg: ReaderEvent) => {
      const conn = this.conns.get(msg.id);
      if (!conn) return;
      if (msg.type === 'request') conn.onRequest(Buffer.from(msg.data));
      else if (msg.type === 'warning') conn.onWarning(msg.message);
      else this.drop(msg.id, { code: msg.code, message: msg.message });
    });
    const fail = (why: { code: string; message: string }): void => {
      if (ReaderThread.current === this) ReaderThread.current = undefined;
      if (this.closed) return;
      this.closed = true; // before closing: a closed pipe's number may be reused by another file
      for (const id of [...this.conns.keys()]) this.drop(id, why);
      closeSync(wakeRead);
      closeSync(wakeWrite);
    };
    this.worker.on('error', (err) => fail({ code: 'EWORKER', message: err.message }));
    this.worker.on('exit', () => fail({ code: 'EWORKER', message: 'reader thread exited' }));
  }

  add(fd: number, conn: Connection, answering?: ThreadAnswering): number {
    loadLibc().setNonBlocking(fd);
    const id = this.nextId++;
    this.conns.set(id, conn);
    this.tell({ op: 'add', id, fd, ...(answering ? { answering } : {}) });
    return id;
  }

  private drop(id: number, why: { code: string; message: string }): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    this.conns.delete(id);
    this.tell({ op: 'remove', id });
    conn.onStopped(why);
    if (this.conns.size === 0 && ReaderThread.current === this) {
      // The last connection is gone: the thread ends (a new one starts with the next mount).
      ReaderThread.current = undefined;
      this.tell({ op: 'exit' });
    }
  }

  private tell(msg: ReaderControl): void {
    if (this.closed) return;
    this.control.postMessage(msg);
    try {
      writeSync(this.wakeWrite, WAKE);
    } catch {
      // the thread is gone already
    }
  }
}

const WAKE = Buffer.from([1]);

/**
 * One open /dev/fuse: requests come in from the process's reader thread, replies go out from the
 * main thread with a single write each (the kernel takes a reply only whole, and writes to
 * /dev/fuse never block).
 */
export class FuseChannel {
  readonly fd: number;
  /** Settles when the reader has stopped: ENODEV after an unmount or abort, another code on error. */
  readonly stopped: Promise<{ code: string; message: string }>;
  private connected = true;

  /** Requests the reader thread answered itself, by opcode (when it answers some). */
  readonly answeredHere: Int32Array | undefined;

  constructor(
    fd: number,
    bufferSize: number,
    onRequest: (req: Buffer) => void,
    private readonly log: Logger,
    answering?: Omit<ThreadAnswering, 'counts'>,
  ) {
    this.fd = fd;
    this.answeredHere = answering ? new Int32Array(new SharedArrayBuffer(64 * 4)) : undefined;
    this.stopped = new Promise((resolve) => {
      ReaderThread.get(bufferSize).add(fd, {
        onRequest,
        onStopped: (why) => {
          this.connected = false;
          resolve(why);
        },
        onWarning: (message) => log.warn({ fd }, message),
      }, answering && this.answeredHere ? { ...answering, counts: this.answeredHere } : undefined);
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
