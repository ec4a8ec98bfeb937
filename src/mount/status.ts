/**
 * What a running mount says about itself, for `clip mounts`: CACHE_DIR/mounts/<mountpoint>.json,
 * rewritten every few seconds by the process serving it (temp + rename), removed when it ends.
 * A file whose process is gone (killed) is shown as stale and removed by the next listing.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readPrivateFile, writePrivateFile } from '../storage/cache-dir.js';
import { isoTime } from '../util/iso-time.js';
import { processStartTime, type MountFiles } from './files.js';
import { mountMemory, type MountMemory } from './process-metrics.js';
import type { RunningMount } from './serve.js';

export interface MountStatus {
  mountpoint: string;
  pid: number;
  /** The process's start time (clock ticks since boot): with the pid, names it for sure. */
  processStart: string;
  image: string;
  manifest: string;
  /** Where the index came from: file, cache, shared, registry, indexed. */
  index: string;
  startedAt: string;
  updatedAt: string;
  /** RSS of the process serving it (the node server's, shared by all its mounts). */
  rssBytes: number;
  /** What this mount holds of that memory (its index, open files, READs in flight). */
  memory?: MountMemory;
  /** How often the node's server serving it was restarted (0 for a foreground mount). */
  restarts: number;
  /** Bytes served from each tier since the mount started. */
  bytes: { disk: number; remote: number; source: number };
  /** FUSE READ requests answered since the mount started. */
  reads?: number;
  /** The storage counters since the mount started (requests, hits, misses, errors per tier, ...), as Metrics.snapshot() names them. */
  counters?: Record<string, number>;
}

/** How often a running mount rewrites its status. */
export const STATUS_INTERVAL_MS = 5000;

export function statusFile(files: MountFiles): string {
  return files.pid.replace(/\.pid$/, '.json');
}

/** A mount's status now. */
export async function statusOf(running: RunningMount, startedAt: string, restarts = 0): Promise<MountStatus> {
  const m = await running.storage.metrics.snapshot();
  return {
    mountpoint: running.mountpoint,
    pid: process.pid,
    processStart: processStartTime(process.pid) ?? '',
    image: running.image.index.image.reference,
    manifest: running.image.index.image.manifestDigest,
    index: running.image.origin,
    startedAt,
    updatedAt: isoTime(),
    rssBytes: process.memoryUsage.rss(),
    memory: mountMemory(running),
    restarts,
    bytes: { disk: m['bytes.disk'] ?? 0, remote: m['bytes.remote'] ?? 0, source: m['bytes.source'] ?? 0 },
    reads: running.mount.server.opCounts.get('READ') ?? 0,
    counters: m,
  };
}

/** Keep the status file of `running` current until the returned stop() (which removes it). */
export function keepStatus(files: MountFiles, running: RunningMount, onError: (err: unknown) => void, restarts = 0): () => Promise<void> {
  const file = statusFile(files);
  const startedAt = isoTime();
  let writing: Promise<void> = Promise.resolve();
  const write = (): void => {
    writing = writing.then(async () => writePrivateFile(file, `${JSON.stringify(await statusOf(running, startedAt, restarts))}\n`)).catch(onError);
  };
  write();
  const timer = setInterval(write, STATUS_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await writing;
    await rm(file, { force: true });
  };
}

/** Every mount with a status file under `cacheDir`: those whose process still runs, and the stale ones (removed). */
export async function listMounts(cacheDir: string): Promise<{ live: MountStatus[]; stale: string[] }> {
  const dir = join(cacheDir, 'mounts');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const live: MountStatus[] = [];
  const stale: string[] = [];
  for (const name of names.sort()) {
    const text = await readPrivateFile(join(dir, name)).catch(() => undefined);
    let status: MountStatus | undefined;
    try {
      status = text ? (JSON.parse(text) as MountStatus) : undefined;
    } catch {
      status = undefined;
    }
    if (status && Number.isSafeInteger(status.pid) && processStartTime(status.pid) === status.processStart) {
      live.push(status);
    } else {
      stale.push(status?.mountpoint ?? name);
      await rm(join(dir, name), { force: true });
    }
  }
  return { live, stale };
}
