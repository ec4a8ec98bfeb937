/**
 * How far V8 lets the server's old generation grow before a full collection. Under many readers
 * the main thread allocates some 80 MB/s of short-lived request objects (bench/server/RESULTS.md);
 * with 1 MB semi-spaces a sixth of it outlives two scavenges (requests in flight) and is promoted,
 * and V8's own growing factor (up to 4x the live heap, chosen from its GC and mutator speeds) then
 * let about 75 MB of that garbage pile up between full collections in some runs: the 32-reader
 * saw-tooth. A fixed factor of 1.25 keeps the old generation within a few MB of its live size,
 * for a few more (short, ~20 MB) full collections. Set at start, not on the command line, so that
 * CLIP_SERVER_V8_FLAGS (benchmarks) can still name another value, or 0 for V8's own.
 */
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 25;

export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): void {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
