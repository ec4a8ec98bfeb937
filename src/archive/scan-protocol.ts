import type { ErrorCode } from '../util/errors.js';
import type { ScanOptions } from './scan.js';
import type { LayerScan, TarEntry } from './types.js';

/** Messages between scanLayerInWorker and its worker. */
export type WorkerRequest =
  | { type: 'start'; opts: Omit<ScanOptions, 'onProgress'> }
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' };

export type WorkerReply =
  | { type: 'ack'; bytes: number }
  /** Entries found so far, sent as they come so that the worker never holds the layer's list; xattrs absent when empty. */
  | { type: 'entries'; entries: TarEntry[] }
  | { type: 'done'; scan: LayerScan }
  | { type: 'error'; message: string; code: ErrorCode | undefined; object: string | undefined };
