/**
 * Give memory back once the server goes quiet. V8 collects garbage when JavaScript allocates: a
 * server that stops being asked for bytes stops allocating, so the buffers of its last burst
 * (inflated spans let go by the checkpoint source, READ replies, chunks) stay as garbage, counted in
 * its RSS, for as long as it stays idle — measured: 60 MB of ArrayBuffers still there 2 minutes
 * after a 170 MB read (bench/server/RESULTS.md). So: when the process grew since the last look
 * and then stayed quiet for a check interval, run a full GC, then ask glibc to return the free
 * pages of its heaps (malloc_trim: freed small blocks otherwise stay in the process's arenas).
 */
import { releaseFreeReadBuffers } from '../fs/read-buffers.js';
import { loadKoffi } from '../util/koffi.js';
import type { Logger } from '../util/log.js';

/** How often the server looks; a collection needs one quiet interval after growth. */
const CHECK_MS = 5000;
/** Growth of RSS over the last settled figure that is worth a collection. */
const GROWTH_BYTES = 8 * 1024 * 1024;
/**
 * A second collection this long after one for growth: the checkpoint source keeps inflated spans
 * (up to 64 MiB in a process) for 30 to 60 s after their last use, and lets them go without
 * allocating anything, so nothing else would collect them.
 */
const AGAIN_MS = 65_000;
const TRIM_AFTER_MS = 1000;

type Trim = (pad: number) => number;

/** glibc's mallopt parameter for the size from which malloc maps memory of its own. */
const M_MMAP_THRESHOLD = -3;
/** Allocations from this size get pages of their own, given back to the system when freed. */
export const MMAP_THRESHOLD_BYTES = 128 * 1024;

export function startIdleCollector(log: Logger): { stop(): void } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    log.debug('server: no --expose-gc: memory is collected only when JavaScript allocates');
    return { stop: () => undefined };
  }
  const trim = mallocTrim(log);
  let settled = process.memoryUsage.rss();
  let last = settled;
  let again: number | undefined;
  const timer = setInterval(() => {
    const now = process.memoryUsage.rss();
    const quiet = Math.abs(now - last) < 1024 * 1024; // no burst under way since the last look
    last = now;
    if (now < settled) settled = now;
    const grown = now - settled >= GROWTH_BYTES;
    if (!quiet || !(grown || (again !== undefined && Date.now() >= again))) return;
    const t0 = performance.now();
    releaseFreeReadBuffers();
    gc();
    again = grown ? Date.now() + AGAIN_MS : undefined;
    // V8 frees the backing stores of dead ArrayBuffers on a background thread after the GC: trim
    // once that is done, or the pages stay with glibc.
    setTimeout(() => {
      trim?.(0);
      settled = last = process.memoryUsage.rss();
      log.debug({ beforeBytes: now, afterBytes: settled, gcMs: Math.round(gcMs) }, 'server: idle collection');
    }, TRIM_AFTER_MS).unref();
    const gcMs = performance.now() - t0;
  }, CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * Make glibc give freed big buffers back at once. Its mmap threshold is dynamic: once a mapped
 * block (a 1 MiB READ buffer, an inflated span) is freed, the threshold rises past its size and
 * later ones come from the heap arenas, where freed memory stays (malloc_trim returns only what
 * is not fragmented). Measured: 48 MB of inflated spans let go under 32 readers, RSS unchanged
 * (bench/server/RESULTS.md). A fixed threshold keeps every buffer from 128 KiB on in pages of
 * its own, unmapped when V8 frees it. Returns whether glibc took it.
 */
export function fixMmapThreshold(log: Logger): boolean {
  try {
    const koffi = loadKoffi<{ load(lib: string): { func(sig: string): (param: number, value: number) => number } }>();
    const mallopt = koffi.load('libc.so.6').func('int mallopt(int, int)');
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) === 1;
  } catch (err) {
    log.debug({ err }, 'server: no mallopt (not glibc?)');
    return false;
  }
}

/** glibc's malloc_trim through koffi (already loaded by the server for pidfd_getfd), if there is one. */
function mallocTrim(log: Logger): Trim | undefined {
  try {
    const koffi = loadKoffi<{ load(lib: string): { func(sig: string): Trim } }>();
    return koffi.load('libc.so.6').func('int malloc_trim(size_t)');
  } catch (err) {
    log.debug({ err }, 'server: no malloc_trim (not glibc?)');
    return undefined;
  }
}
