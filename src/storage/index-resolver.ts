/**
 * Where an image's index comes from, for every command: the local cache, then the shared cache,
 * then the registry (an artifact referring to the image), and only when none has it, a scan of
 * every layer here. What is found or made is kept locally and in the shared cache, so the next
 * command on this node, or the next node, finds it without reading a layer.
 */
import type { ImageIndex } from '../index/reader.js';
import { RegistryRepository } from '../oci/registry-source.js';
import type { ImageSource, ResolvedImage } from '../oci/types.js';
import { silentLogger, type Logger } from '../util/log.js';
import { ClipError } from '../util/errors.js';
import { findPublishedIndex, findSharedIndex, isCondemned, storeSharedIndex, type Acceptor } from './index-artifact.js';
import { isDiskFull } from './cache-dir.js';
import { indexImage, loadCachedIndex, storeCachedIndex, type IndexImageOptions } from './indexer.js';
import type { RedisChunkCache } from './remote-cache.js';

export type IndexOrigin = 'cache' | 'shared' | 'registry' | 'indexed';

export interface ResolveIndexOptions {
  cacheDir: string;
  /** The shared cache (redis://…) to look in and to fill. */
  remoteCache?: string;
  /** Look in the shared cache and the registry before indexing (default true). */
  discover?: boolean;
  logger?: Logger;
  onProgress?: IndexImageOptions['onProgress'];
  /** Settings for indexing, when it comes to that. */
  indexing?: Pick<IndexImageOptions, 'span' | 'chunkSize' | 'bigFileThreshold' | 'concurrency'>;
  /**
   * false: an image with no index to find fails with ENOINDEX instead of being indexed here (the
   * node's server, asked to resolve an image, leaves indexing to the command that shows progress).
   */
  mayIndex?: boolean;
  /**
   * Return as soon as the index is found and checked, its local cache copy still being written
   * (ResolvedIndex.stored): a mount serves from the index in memory and waits for the copy only
   * before it attaches, so the write (with its sync) overlaps the storage's opening and the
   * profile's prefetch (bench/index/RESULTS.md, session 16).
   */
  deferStore?: boolean;
}

export interface ResolvedIndex {
  index: ImageIndex;
  bytes: Buffer;
  origin: IndexOrigin;
  /** The local cache copy (none when the cache disk is full: the index serves from memory). */
  file?: string;
  /**
   * With deferStore, the local cache copy being written: settles with its path (undefined when
   * the cache disk is full), or rejects as the write failed (what fails the command otherwise).
   */
  stored?: Promise<string | undefined>;
}

export async function resolveIndex(source: ImageSource, image: ResolvedImage, opts: ResolveIndexOptions): Promise<ResolvedIndex> {
  const log = opts.logger ?? silentLogger;
  const cached = await loadCachedIndex(opts.cacheDir, image.manifestDigest, log);
  if (cached && (await windowsReachable(source, cached, log))) return { index: cached, bytes: cached.buffer, origin: 'cache', file: cached.file };

  const discover = opts.discover ?? true;
  const repo = source instanceof RegistryRepository ? source : undefined;
  // ioredis is loaded only for a shared cache: a command without one (clip run, say) starts sooner.
  const remote: RedisChunkCache | undefined = opts.remoteCache
    ? await (await import('./remote-cache.js')).RedisChunkCache.connect({ url: opts.remoteCache, logger: log })
    : undefined;
  try {
    let found: Omit<ResolvedIndex, 'file'> | undefined;
    const accept: Acceptor = async (bytes) => !(await isCondemned(opts.cacheDir, bytes, remote));
    if (discover && remote) {
      const shared = await findSharedIndex(remote, image, log, accept);
      if (shared && (await windowsReachable(source, shared.index, log))) found = { ...shared, origin: 'shared' };
    }
    if (!found && discover && repo) {
      const published = await findPublishedIndex(repo, image, log, accept).catch((err: unknown) => {
        // A registry that cannot list referrers (old, or denying it) only costs the discovery.
        log.warn({ image: image.reference, err: (err as Error).message }, 'cannot look for a published index');
        return undefined;
      });
      if (published) {
        found = { index: published.index, bytes: published.bytes, origin: 'registry' };
        if (remote) await storeSharedIndex(remote, image.manifestDigest, published.bytes, published.packed);
      }
    }
    if (!found && opts.mayIndex === false) {
      throw new ClipError('ENOINDEX', 'has no index published, shared or cached: it must be indexed first', { object: image.reference });
    }
    if (!found) {
      const made = await indexImage(source, {
        resolved: image, cacheDir: opts.cacheDir, logger: log, ...opts.indexing, ...(remote ? { remote } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
      if (remote) await storeSharedIndex(remote, image.manifestDigest, made.bytes);
      log.info({ image: image.reference, origin: 'indexed' }, 'index ready');
      return { index: made.index, bytes: made.bytes, origin: 'indexed', ...(made.cachedAt ? { file: made.cachedAt } : {}) };
    }
    const bytes = found.bytes;
    const stored = storeCachedIndex(opts.cacheDir, image.manifestDigest, bytes).catch((err: unknown) => {
      // A full cache disk costs caching only: the index is in memory, and serves as it is.
      if (!isDiskFull(err)) throw err;
      log.warn({ err: (err as Error).message, image: image.reference }, 'the index is not cached: the cache disk is full');
      return undefined;
    });
    if (opts.deferStore) {
      stored.catch(() => undefined); // the caller's to await; unawaited (a mount failing first), not unhandled
      log.info({ image: image.reference, origin: found.origin }, 'index ready');
      return { ...found, stored };
    }
    const file = await stored;
    log.info({ image: image.reference, origin: found.origin }, 'index ready');
    return { ...found, ...(file ? { file } : {}) };
  } finally {
    await remote?.close();
  }
}

/**
 * Whether this image's source can serve the windows an index left out (format 4, published). An
 * index found by manifest digest may have been published in another repository than the one this
 * command reads (a copy of the image, a local layout): its windows blob is not there, and every
 * read that starts at a checkpoint would fail. Asked only when the source is not where the index
 * was made (one byte of the blob); otherwise, or with every window at hand, nothing is asked.
 */
async function windowsReachable(source: ImageSource, index: ImageIndex, log: Logger): Promise<boolean> {
  const blob = index.windowsBlob;
  if (!blob || index.windowsAtHand || source.location === index.image.location) return true;
  try {
    const body = await source.openBlobRange(blob, 0, 1);
    body.destroy();
    return true;
  } catch (err) {
    log.warn({ image: index.image.reference, source: source.location, madeFrom: index.image.location, windows: blob.digest, err: (err as Error).message },
      'the index found for this image left its checkpoint windows in another repository: not used here');
    return false;
  }
}
