/** Temporary index files in CACHE_DIR/indexes/ that writers killed mid-write (kill -9) left behind. */
import path from 'node:path';
import { removeStaleTemps } from '../index/writer.js';
import { silentLogger, type Logger } from '../util/log.js';

/** Remove the stale ones; a failure only costs disk space, so it is logged, not thrown. Returns how many went. */
export async function removeStaleIndexTemps(cacheDir: string, logger: Logger = silentLogger): Promise<number> {
  const dir = path.join(cacheDir, 'indexes');
  try {
    const removed = await removeStaleTemps(dir);
    if (removed > 0) logger.info({ dir, removed }, 'removed index files left unfinished by killed writers');
    return removed;
  } catch (err) {
    logger.warn({ dir, err: (err as Error).message }, 'could not remove stale temporary index files');
    return 0;
  }
}
