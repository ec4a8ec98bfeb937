import os from 'node:os';
import type { Readable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { ClipError } from '../util/errors.js';
import { siblingModule, startWorker } from '../util/worker.js';
import type { ScanOptions } from './scan.js';
import type { WorkerReply, WorkerRequest } from './scan-protocol.js';
import { NO_XATTRS } from './tar-walker.js';
import type { LayerScan, TarEntry } from './types.js';

type Source = Readable | AsyncIterable<Uint8Array>;
/** The layer's bytes, or a function opening them once a worker is free (so no response sits unread). */
export type LayerSource = Source | (() => Promise<Source>);

/** Bytes sent to a worker and not yet processed before the reader waits (bounds memory). */
const MAX_IN_FLIGHT = 16 * 1024 * 1024;

/** A few scan workers, one job each at a time; idle workers do not keep the process alive. */
export class ScanPool {
  private readonly size: number;
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private readonly waiting: ((w: Worker) => void)[] = [];

  constructor(size = os.availableParallelism()) {
    this.size = Math.max(1, size);
  }

  async scan(input: LayerSource, opts: ScanOptions): Promise<LayerScan> {
    const worker = await this.acquire();
    // Reused only when the worker itself ended the job (its result, or its own clean error): a job
    // abandoned from this side (the input failed, another layer failed) leaves the worker mid-scan,
    // and its late reply would be taken for the next job's.
    const job = { endedByWorker: false };
    let healthy = true;
    try {
      return await runJob(worker, typeof input === 'function' ? await input() : input, opts, job);
    } catch (err) {
      if (!(err instanceof ClipError) || !job.endedByWorker) healthy = false;
      throw err;
    } finally {
      this.release(worker, healthy);
    }
  }

  async close(): Promise<void> {
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) {
      w.ref();
      return Promise.resolve(w);
    }
    if (this.all.size < this.size) {
      const worker = startWorker(siblingModule(import.meta.url, 'scan-worker'));
      this.all.add(worker);
      worker.on('exit', () => this.all.delete(worker));
      return Promise.resolve(worker);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(worker: Worker, healthy: boolean): void {
    if (!healthy) {
      this.all.delete(worker);
      void worker.terminate();
      const next = this.waiting.shift();
      if (next) void this.acquire().then(next);
      return;
    }
    const next = this.waiting.shift();
    if (next) return next(worker);
    worker.unref();
    this.idle.push(worker);
  }
}

async function runJob(worker: Worker, input: Readable | AsyncIterable<Uint8Array>, opts: ScanOptions, job: { endedByWorker: boolean }): Promise<LayerScan> {
  const { onProgress, ...workerOpts } = opts;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  let resolveDone!: (s: LayerScan) => void;
  let rejectDone!: (e: Error) => void;
  const done = new Promise<LayerScan>((res, rej) => { resolveDone = res; rejectDone = rej; });
  done.catch(() => {});
  const fail = (e: Error): void => {
    failure ??= e;
    rejectDone(e);
    wake?.();
  };
  const entries: TarEntry[] = [];
  const onMessage = (msg: WorkerReply): void => {
    if (msg.type === 'entries') {
      for (const e of msg.entries) entries.push(reviveEntry(e));
    } else if (msg.type === 'ack') {
      inFlight -= msg.bytes;
      if (inFlight <= MAX_IN_FLIGHT / 2) wake?.();
    } else if (msg.type === 'done') {
      job.endedByWorker = true;
      for (const e of msg.scan.entries) entries.push(reviveEntry(e));
      msg.scan.entries = entries;
      resolveDone(reviveScan(msg.scan));
    } else {
      job.endedByWorker = true;
      fail(msg.code ? new ClipError(msg.code, msg.message.replace(`${msg.object}: `, ''), { object: msg.object }) : new Error(msg.message));
    }
  };
  const onError = (e: Error): void => fail(e);
  const onExit = (code: number): void => fail(new Error(`scan worker exited (${code})`));
  worker.on('message', onMessage);
  worker.on('error', onError);
  worker.on('exit', onExit);
  const post = (msg: WorkerRequest, transfer?: ArrayBuffer[]): void => worker.postMessage(msg, transfer);
  try {
    post({ type: 'start', opts: workerOpts });
    let sent = 0;
    for await (const chunk of input as AsyncIterable<Uint8Array>) {
      if (failure) break;
      const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer
        ? chunk : new Uint8Array(chunk);
      inFlight += owned.length;
      sent += owned.length;
      post({ type: 'data', chunk: owned }, [owned.buffer as ArrayBuffer]);
      onProgress?.(sent);
      while (inFlight > MAX_IN_FLIGHT && !failure) await new Promise<void>((r) => { wake = r; });
      wake = null;
    }
    if (!failure) post({ type: 'end' });
    return await done;
  } finally {
    worker.off('message', onMessage);
    worker.off('error', onError);
    worker.off('exit', onExit);
  }
}

/** Structured clone turns Buffers into Uint8Arrays: make them Buffers again. */
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.length);

function reviveScan(scan: LayerScan): LayerScan {
  for (const cp of scan.checkpoints) {
    cp.window = buf(cp.window);
    if (cp.packed) cp.packed.bytes = buf(cp.packed.bytes);
  }
  scan.chunkDigests = buf(scan.chunkDigests);
  if (scan.bounds) scan.bounds = buf(scan.bounds);
  return scan;
}

/** An entry as the worker sent it: xattrs absent when empty (see scan-worker.ts). */
function reviveEntry(e: TarEntry): TarEntry {
  if (e.xattrs === undefined) e.xattrs = NO_XATTRS as Map<string, Buffer>;
  else for (const [k, v] of e.xattrs) e.xattrs.set(k, buf(v));
  return e;
}

let defaultPool: ScanPool | null = null;

/**
 * scanLayer with the CPU work (inflate, hashing, tar walking) in a worker thread from a shared
 * pool sized to the machine's cores; the caller's thread only moves bytes. Chunks of `input` are
 * transferred to the worker, so the caller must not reuse them. With more layers than workers a
 * call waits for a free worker before it reads anything: pass a function to open the stream then.
 */
export function scanLayerInWorker(input: LayerSource, opts: ScanOptions): Promise<LayerScan> {
  defaultPool ??= new ScanPool();
  return defaultPool.scan(input, opts);
}

/** Stop the shared pool's workers (tests, shutdown). */
export async function closeScanPool(): Promise<void> {
  const pool = defaultPool;
  defaultPool = null;
  await pool?.close();
}
