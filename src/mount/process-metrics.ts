/**
 * The serving process's own figures: its memory (the node server's, shared by every mount it
 * serves), what of it one mount holds, and how often the server was restarted (crash or
 * upgrade); for `clip server status`, `clip mounts` and each mount's metrics registry.
 */
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { PromClient } from '../storage/counts.js';
import { keptSpanBytes } from '../storage/checkpoint-source.js';
import type { LayerRecord } from '../storage/types.js';

/** The process's memory, in bytes. */
export interface ProcessMemory {
  rss: number;
  /** Anonymous resident memory: the process's own (heap, buffers, thread stacks). */
  anon: number;
  /** File-backed resident memory: mostly the node binary's pages, shared with every Node process. */
  file: number;
  heapTotal: number;
  heapUsed: number;
  /** Memory of ArrayBuffers and Buffers (SharedArrayBuffers, such as loaded indexes, included). */
  arrayBuffers: number;
  external: number;
  /** Inflated spans the checkpoint sources keep for the next reads (bounded per process). */
  keptSpans: number;
}

/** What one mount holds of its server's memory, in bytes. */
export interface MountMemory {
  /** The loaded index (shared memory; mounts of one image share it, each counts it). */
  indexBytes: number;
  /**
   * The 32 KiB windows of the learned checkpoints the mount's source keeps: captured by its own
   * fetches and handed over by a startup profile (kept for the mount's life, ~3.5 MB for
   * debian-python's profile). Absent in the status of a server older than this field.
   */
  learnedWindowBytes?: number;
  /** Files open through the mount now. */
  openFiles: number;
  /** READ buffers lent and not yet written back. */
  readsInFlight: number;
}

export interface MountMemorySource {
  readonly image: { readonly index: { readonly buffer: Buffer }; readonly layers: readonly LayerRecord[] };
  readonly fs: { readonly openFiles: number; readonly readsInFlight: number };
  /** The store's source: the learned checkpoints it keeps, captured and handed over. */
  readonly source: { learnedWindowBytes(layer: LayerRecord): number };
}

export function mountMemory(m: MountMemorySource): MountMemory {
  return { indexBytes: m.image.index.buffer.length, learnedWindowBytes: learnedWindowBytes(m), openFiles: m.fs.openFiles, readsInFlight: m.fs.readsInFlight };
}

function learnedWindowBytes(m: MountMemorySource): number {
  let bytes = 0;
  for (const layer of m.image.layers) bytes += m.source.learnedWindowBytes(layer);
  return bytes;
}

export function processMemory(): ProcessMemory {
  const u = process.memoryUsage();
  const { anon, file } = residentSplit();
  return { rss: u.rss, anon, file, heapTotal: u.heapTotal, heapUsed: u.heapUsed, arrayBuffers: u.arrayBuffers, external: u.external, keptSpans: keptSpanBytes() };
}

/** RssAnon and RssFile (+ RssShmem) of /proc/self/status; zeros where there is no such file. */
function residentSplit(): { anon: number; file: number } {
  let st = '';
  try {
    st = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return { anon: 0, file: 0 };
  }
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? 0) * 1024;
  return { anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}

/** Adds the process's (and a mount's) gauges to a registry; prom-client is passed in, loaded by the caller when asked for. */
export function registerProcessMetrics(prom: PromClient, registry: Registry, restarts: number, mount?: MountMemorySource): void {
  const registers = [registry];
  const gauge = (name: string, help: string, value: () => number): void => {
    new prom.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  };
  gauge('clip_process_resident_memory_bytes', 'Resident memory of the process serving this mount (the node server serves every background mount)', () => process.memoryUsage.rss());
  gauge('clip_process_anon_memory_bytes', 'Anonymous resident memory of the process serving this mount (its own, without the node binary\'s pages)', () => residentSplit().anon);
  gauge('clip_process_heap_used_bytes', 'V8 heap in use in the process serving this mount', () => process.memoryUsage().heapUsed);
  gauge('clip_process_heap_total_bytes', 'V8 heap reserved in the process serving this mount', () => process.memoryUsage().heapTotal);
  gauge('clip_process_array_buffers_bytes', 'Memory of ArrayBuffers and Buffers in the process serving this mount (loaded indexes included)', () => process.memoryUsage().arrayBuffers);
  gauge('clip_process_kept_spans_bytes', 'Inflated spans the process keeps for the next reads', keptSpanBytes);
  if (mount) {
    gauge('clip_mount_index_bytes', 'The loaded index of this mount (shared by the mounts of one image)', () => mount.image.index.buffer.length);
    gauge('clip_mount_learned_window_bytes', 'Windows of the learned checkpoints this mount\'s source keeps (its own fetches\' and a startup profile\'s)', () => learnedWindowBytes(mount));
    gauge('clip_mount_open_files', 'Files open through this mount', () => mount.fs.openFiles);
  }
  new prom.Gauge({ name: 'clip_server_restarts', help: 'Times the node server serving this mount was started again (after a crash, or by clip server restart)', registers }).set(restarts);
}
