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
  /** The thread no longer touches the descriptor (it stopped reading it, or was told to). */
  onReleased: () => void;
}

/**
 * One of the process's reader threads (reader-worker.ts), shared by every open /dev/fuse: slot k
 * reads each connection's k-th descriptor (the device itself for slot 0, clones for the others).
 * Started with the first connection that needs it, ended with the last.
 */
class ReaderThread {
  private static readonly slots: (ReaderThread | undefined)[] = [];
  private readonly worker: Worker;
  private readonly control: MessagePort;
  private readonly wakeWrite: number;
  private readonly conns = new Map<number, Connection>();
  private nextId = 1;
  private closed = false;

  static get(slot: number, bufferSize: number): ReaderThread {
    const current = ReaderThread.slots[slot];
    if (current && current.bufferSize >= bufferSize) return current;
    if (current?.conns.size) {
      throw new Error(`the FUSE reader thread reads at most ${current.bufferSize} bytes a request; ${bufferSize} asked`);
    }
    return (ReaderThread.slots[slot] = new ReaderThread(slot, bufferSize));
  }

  private constructor(
    private readonly slot: number,
    readonly bufferSize: number,
  ) {
    const libc = loadLibc();
    const [wakeRead, wakeWrite] = libc.pipe();
    libc.setNonBlocking(wakeRead);
    this.wakeWrite = wakeWrite;
    const { port1, port2 } = new MessageChannel();
    this.control = port1;
    const data: ReaderWorkerData = { wakeFd: wakeRead, bufferSize, control: port2 };
    this.worker = startWorker(siblingModule(import.meta.url, 'reader-worker'), { workerData: data, transferList: [port2] });
    this.worker.on('message', (msg: ReaderEvent) => {
      if (msg.type === 'request') this.conns.get(msg.id)?.onRequest(Buffer.from(msg.data));
      else if (msg.type === 'warning') this.conns.get(msg.id)?.onWarning(msg.message);
      else if (msg.type === 'removed') this.release(msg.id);
      else this.release(msg.id, { code: msg.code, message: msg.message });
    });
    const fail = (why: { code: string; message: string }): void => {
      if (ReaderThread.slots[this.slot] === this) ReaderThread.slots[this.slot] = undefined;
      if (this.closed) return;
      this.closed = true; // before closing: a closed pipe's number may be reused by another file
      for (const id of [...this.conns.keys()]) this.release(id, why);
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

  /** Stop reading connection `id`; its onReleased follows once the thread has let go of it. */
  remove(id: number): void {
    if (this.conns.has(id)) this.tell({ op: 'remove', id });
  }

  private release(id: number, why?: { code: string; message: string }): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    this.conns.delete(id);
    if (why) conn.onStopped(why);
    conn.onReleased();
    if (this.conns.size === 0 && ReaderThread.slots[this.slot] === this) {
      // The last connection is gone: the thread ends (a new one starts with the next mount).
      ReaderThread.slots[this.slot] = undefined;
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
 * One open /dev/fuse: requests come in from the process's reader threads (one descriptor each: the
 * device, then clones of it), replies go out from the main thread with a single write each, on the
 * descriptor the request came from (the kernel finds a request only in the queue of the
 * descriptor that read it; the kernel takes a reply only whole, and writes to /dev/fuse never block).
 */
export class FuseChannel {
  readonly fd: number;
  /** Settles when every reader has stopped: ENODEV after an unmount or abort, another code on error. */
  readonly stopped: Promise<{ code: string; message: string }>;
  /** Descriptors read, one per reader thread: fd, then its clones. */
  readonly fds: readonly number[];
  private connected = true;

  /** Requests the reader threads answered themselves, by opcode (when they answer some). */
  readonly answeredHere: Int32Array | undefined;

  constructor(
    fd: number,
    bufferSize: number,
    onRequest: (req: Buffer, fd: number) => void,
    private readonly log: Logger,
    answering?: Omit<ThreadAnswering, 'counts'>,
    /** Reader threads for this connection: the first reads `fd`, each other one a clone of it. */
    threads = 1,
  ) {
    this.fd = fd;
    this.answeredHere = answering ? new Int32Array(new SharedArrayBuffer(64 * 4)) : undefined;
    const fds = [fd];
    for (let k = 1; k < threads; k++) {
      try {
        fds.push(loadLibc().cloneFuse(fd));
      } catch (err) {
        log.warn({ fd, err: (err as Error).message }, 'fuse: cannot clone /dev/fuse; fewer reader threads');
        break;
      }
    }
    this.fds = fds;
    const threadAnswering = answering && this.answeredHere ? { ...answering, counts: this.answeredHere } : undefined;
    this.stopped = new Promise((resolve) => {
      const readers: { thread: ReaderThread; id: number }[] = [];
      let first: { code: string; message: string } | undefined;
      let reading = fds.length;
      fds.forEach((f, k) => {
        const thread = ReaderThread.get(k, bufferSize);
        const id = thread.add(f, {
          onRequest: (req) => onRequest(req, f),
          onStopped: (why) => {
            if (first) return;
            // One reader stopping ends the connection for all: the others let go of theirs.
            first = why;
            this.connected = false;
            for (const r of readers) r.thread.remove(r.id);
          },
          onWarning: (message) => log.warn({ fd: f }, message),
          onReleased: () => {
            if (k > 0) closeSync(f);
            if (--reading === 0) resolve(first ?? { code: 'ENODEV', message: 'FUSE readers stopped' });
          },
        }, threadAnswering);
        readers.push({ thread, id });
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

  /** Send a reply on `fd` (the descriptor the request came from); `error` is a positive errno or 0. */
  reply(unique: bigint, error: number, payload?: Uint8Array | readonly Uint8Array[], fd = this.fd): void {
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
