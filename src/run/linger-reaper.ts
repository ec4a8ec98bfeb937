/**
 * The linger reaper of a node (see linger.ts), run as `node linger-reaper.js CACHE_DIR`, detached:
 * it waits for the earliest linger's time, then, holding the run lock, drops each expired linger
 * and stops its mount unless a container still uses it (that container's end lingers again). It
 * looks again at least every LOOK_MS, so a linger written later with an earlier time (a shorter
 * --linger) is not held past it by much. A reaper killed early leaves expired lingers, which any
 * sweep (the next `clip run`, `clip run --cleanup`) treats as gone.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { readPrivateFile } from '../storage/cache-dir.js';
import { silentLogger } from '../util/log.js';
import { imageMountDigests, stopIfUnused } from './image-mount.js';
import { tryLock, withLock } from './lock.js';
import { imageMountPaths, runPaths } from './paths.js';

const LOOK_MS = 2000;

async function lingerUntil(file: string): Promise<number | undefined> {
  try {
    const owner = JSON.parse((await readPrivateFile(file)) ?? '') as { lingerUntil?: unknown };
    return typeof owner.lingerUntil === 'number' ? owner.lingerUntil : undefined;
  } catch {
    return undefined;
  }
}

/** The lingers there are now, by image digest. */
async function lingers(cacheDir: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const digest of await imageMountDigests(cacheDir)) {
    const until = await lingerUntil(imageMountPaths(cacheDir, digest).linger);
    if (until !== undefined) found.set(digest, until);
  }
  return found;
}

export async function reap(cacheDir: string): Promise<void> {
  const mine = tryLock(runPaths(cacheDir).reaper);
  if (!mine) return; // another reaper runs for this node
  try {
    for (;;) {
      const now = Date.now();
      const found = await lingers(cacheDir);
      const expired = [...found].filter(([, until]) => until <= now).map(([digest]) => digest);
      if (found.size > 0 && expired.length === 0) {
        await sleep(Math.min(Math.min(...found.values()) - now + 20, LOOK_MS));
        continue;
      }
      const ended = await withLock(runPaths(cacheDir).lock, async () => {
        for (const digest of expired) {
          const paths = imageMountPaths(cacheDir, digest);
          const until = await lingerUntil(paths.linger);
          if (until !== undefined && until > Date.now()) continue; // a container ended meanwhile: wait on
          await rm(paths.linger, { force: true });
          await stopIfUnused(cacheDir, digest, silentLogger).catch(() => undefined);
        }
        if ((await lingers(cacheDir)).size > 0) return false;
        mine.release(); // before the run lock: a linger written after this starts its own reaper
        return true;
      });
      if (ended) return;
    }
  } finally {
    mine.release();
  }
}

// Run as a program (not when imported): the arguments are ours.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [cacheDir] = process.argv.slice(2);
  if (cacheDir) reap(cacheDir).then(() => process.exit(0), () => process.exit(1));
}
