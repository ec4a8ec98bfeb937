/**
 * One image mounted and served by this process: the index (given, cached or made now), the storage
 * read path, the filesystem, the FUSE mount, and an optional metrics endpoint; stopped cleanly.
 */
import type { Server } from 'node:http';
import { resolve } from 'node:path';
import { openImageArg, openMountStorage, type OpenedImage, type ResolvedHandoff } from './open-image.js';
import { ImageFilesystem, imageMountOptions, THREAD_ANSWERS_MODULE } from '../fs/image-fs.js';
import { attach, cancelPrestartedReaders, holdReaderGrowth, prestartReaders, serveAttached, type Attached, type InitInfo, type Mount, type MountOptions } from '../fuse/index.js';
import { parsePlatform } from '../oci/platform.js';
import { timeoutsWithin } from '../oci/retry.js';
import type { IndexProgress } from '../storage/indexer.js';
import type * as LayerAuditModule from '../storage/layer-audit.js';
import { defaultCacheDir } from '../storage/cache-dir.js';
import type { BackgroundFetch, CheckpointSource, Storage } from '../storage/index.js';
import { silentLogger, type Logger } from '../util/log.js';
import { CLIP_FSNAME } from './files.js';
import { registerProcessMetrics } from './process-metrics.js';
import { checkMountPlacement } from './placement.js';
import { requireRoot } from './require-root.js';
import { startMountProfile, type MountProfile } from '../profile/mount-profile.js';

export { requireRoot } from './require-root.js';

export interface MountConfig {
  /** Image reference or index file. */
  image: string;
  /** `image` as the caller resolved it (its cached index, its blobs' location): the mount then resolves nothing. */
  resolved?: ResolvedHandoff;
  /** false: an image with no index to find fails with ENOINDEX rather than being indexed by the mount. */
  mayIndex?: boolean;
  mountpoint: string;
  cacheDir?: string;
  remoteCache?: string;
  /** Look for a published index (shared cache, registry) before indexing; default true. */
  discover?: boolean;
  /** Cap on the disk cache (bytes): least recently used layers are evicted beyond it. */
  cacheMaxBytes?: number;
  /** While readers are idle, fetch the rest of every layer to disk at this rate. */
  /** Without bytesPerSecond: storage's DEFAULT_BACKGROUND_RATE. */
  backgroundFetch?: { bytesPerSecond?: number };
  /** A read that no tier can answer within this fails with EIO. Default: the storage default (30 s). */
  readTimeoutMs?: number;
  /** "[host:]port" for a Prometheus endpoint. */
  metricsAddr?: string;
  /** Honour setuid/setgid bits and capabilities of the image's programs (default: nosuid). */
  allowSuid?: boolean;
  /** Let the image's device nodes be opened (default: nodev). */
  allowDev?: boolean;
  /** Kernel readahead for the mount, in KiB (default: imageMountOptions'). */
  readaheadKb?: number;
  platform?: string;
  /**
   * Startup profile (docs/profiles.md): 'auto' (default) prefetches a profile found for the index,
   * or records this start and keeps it; 'record' records until unmounted (`clip profile`); 'off'.
   */
  profile?: 'auto' | 'record' | 'off';
  insecureRegistry?: string[];
  logLevel?: string;
}

export interface RunningMount {
  readonly mountpoint: string;
  readonly image: OpenedImage;
  readonly storage: Storage;
  /** The store's source (the learned checkpoints it keeps count in the mount's memory). */
  readonly source: CheckpointSource;
  readonly fs: ImageFilesystem;
  readonly mount: Mount;
  /** The background fetch, when configured (stopped by the unmount). */
  readonly background?: BackgroundFetch;
  /** The startup profile's lookup, prefetch and recording. */
  readonly profile: MountProfile;
  /** Settles once the mount is gone (by stop() or anyone's umount) and everything is closed. */
  readonly done: Promise<void>;
  /** Unmount (lazily if busy, aborting a stuck connection), then close storage and image. Idempotent. */
  stop(): Promise<void>;
}

/** How long chunks still on their way to the shared cache may delay the end of a mount. */
const FLUSH_MS = 2000;
/** The longest a profile's prefetch holds the reader threads to their count (a slow link's). */
const PREFETCH_GROWTH_HOLD_MS = 10_000;


export interface StartMountOptions {
  logger?: Logger;
  onProgress?: (e: IndexProgress) => void;
  /** Mounts /dev/fuse on the mountpoint; default: in this process. The node's server asks its holder. */
  attach?: (mountpoint: string, opts: MountOptions) => Promise<Attached>;
  /** Take over a mount an earlier server set up (already attached, INIT answered then). */
  resume?: { attached: Attached; init: InitInfo };
  /** How often the node server serving this mount was restarted (for its metrics). */
  restarts?: number;
}

export async function startMount(cfg: MountConfig, opts: StartMountOptions = {}): Promise<RunningMount> {
  const log = opts.logger ?? silentLogger;
  const mountpoint = resolve(cfg.mountpoint);
  requireRoot(mountpoint); // before any indexing: fail fast
  // A resumed mount is in place already: the placement was checked when it was made.
  if (!opts.resume) await checkMountPlacement(cfg.cacheDir ?? defaultCacheDir(), mountpoint);
  const mountOpts: MountOptions = { fsname: CLIP_FSNAME, subtype: CLIP_FSNAME, logger: log, ...imageMountOptions(),
    ...(cfg.readaheadKb !== undefined ? { readaheadKb: cfg.readaheadKb } : {}),
    suid: cfg.allowSuid === true, dev: cfg.allowDev === true,
  };
  // The reader thread starts while the image is resolved (an index and a profile to fetch, on an
  // empty node): by the attach it is ready (bench/index/RESULTS.md, session 13).
  if (!opts.resume) prestartReaders(mountOpts, [THREAD_ANSWERS_MODULE]);
  let image: OpenedImage;
  try {
    image = await openImageArg(cfg.image, {
      ...(cfg.cacheDir ? { cacheDir: cfg.cacheDir } : {}),
      ...(cfg.platform ? { platform: parsePlatform(cfg.platform) } : {}),
      registry: { insecureRegistries: cfg.insecureRegistry ?? [], ...(cfg.readTimeoutMs !== undefined ? { timeouts: timeoutsWithin(cfg.readTimeoutMs) } : {}) },
      ...(cfg.remoteCache ? { remoteCache: cfg.remoteCache } : {}),
      ...(cfg.discover === false ? { discover: false } : {}),
      logger: log,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(cfg.resolved ? { resolved: cfg.resolved } : {}),
      ...(cfg.mayIndex === false ? { mayIndex: false } : {}),
      profileAhead: !opts.resume && (cfg.profile ?? 'auto') === 'auto',
      // The index's cache copy is written while the storage opens and the prefetch starts.
      deferIndexStore: true,
    });
  } catch (err) {
    cancelPrestartedReaders();
    throw err;
  }
  let storage: Storage | undefined;
  let metrics: Server | undefined;
  let profileWork: MountProfile | undefined;
  log.debug({ origin: image.origin }, 'mount: image opened');
  try {
    let source: CheckpointSource;
    ({ storage, source } = await openMountStorage(image, {
      ...(cfg.remoteCache ? { remoteCache: cfg.remoteCache } : {}),
      ...(cfg.cacheMaxBytes !== undefined ? { cacheMaxBytes: cfg.cacheMaxBytes } : {}),
      ...(cfg.readTimeoutMs !== undefined ? { readTimeoutMs: cfg.readTimeoutMs } : {}),
      logger: log,
    }));
    log.debug('mount: storage opened');
    const fs = new ImageFilesystem(image.index, storage, { logger: log });
    const restarts = opts.restarts ?? 0;
    const held = { image, fs, source };
    storage.metrics.add((prom, registry) => registerProcessMetrics(prom, registry, restarts, held));
    // node:http and prom-client load only for a mount that serves metrics.
    if (cfg.metricsAddr) metrics = await (await import('./metrics-server.js')).serveMetrics(cfg.metricsAddr, await storage.metrics.registry());
    // Loaded only when asked for, and before mounting, so that nothing can fail once mounted.
    const fetcher = cfg.backgroundFetch ? await import('../storage/background-fetch.js') : undefined;
    // Looked for (or recorded) from now, while the mount is attached: the prefetch starts sooner.
    // (Holding it until FUSE INIT made the mount ready sooner but python end later: session 11.)
    const profile = startMountProfile({
      mode: opts.resume ? 'off' : cfg.profile ?? 'auto', cacheDir: image.cacheDir, index: image.index, layers: image.layers,
      // --no-discover: nothing is looked for in the registry, profiles included.
      fs, storage, blobs: cfg.discover === false ? undefined : image.blobs, logger: log,
      ...(image.earlyProfile ? { earlyProfile: image.earlyProfile } : {}),
    });
    profileWork = profile;
    // While a profile's prefetch runs, the process's CPU is its (and the program's): a second reader
    // thread's start (~80 ms of CPU, then its compiling) only slowed the start down (session 17).
    const releaseGrowth = holdReaderGrowth(PREFETCH_GROWTH_HOLD_MS);
    void profile.prefetched.finally(releaseGrowth);
    // Nothing is mounted before the index's cache copy is written (or its failure fails the mount,
    // as it did when it was written first): a restarted server takes the mount over from it.
    await image.indexStored;
    const attached = opts.resume?.attached ?? (await (opts.attach ?? attach)(mountpoint, mountOpts));
    log.debug('mount: attached');
    const m = await serveAttached(fs, attached, mountOpts, opts.resume?.init);
    const st = storage;
    // An index this process did not make is checked against each layer once it is whole on disk.
    // The audit (with the indexing and registry code it needs) loads only when a layer is to be
    // audited: a server serving from a warm cache never loads it (bench/server/RESULTS.md).
    const audit = image.origin === 'indexed' ? undefined : lazyAudit();
    if (audit) {
      // A chunk the source gives twice with another digest than the index's leaves the layer
      // forever incomplete, so the background fetch's audit never comes: audit it from the source.
      const audited = new Set<string>();
      const stopAudits = new AbortController();
      void m.closed.then(() => stopAudits.abort());
      st.onSourceMismatch = (layer) => {
        if (audited.has(layer.diffId)) return;
        audited.add(layer.diffId);
        const n = image.layers.findIndex((l) => l.diffId === layer.diffId);
        void audit.auditOrCondemn(st, image.index, n, layer, { cacheDir: image.cacheDir, logger: log, fromSource: true, signal: stopAudits.signal })
          .catch((err: unknown) => log.warn({ err, layer: layer.diffId }, 'index audit from the source failed'));
      };
    }
    const background: BackgroundFetch | undefined = fetcher && cfg.backgroundFetch
      ? fetcher.startBackgroundFetch(st, image.layers, {
        ...cfg.backgroundFetch, logger: log,
        ...(audit ? {
          onLayerComplete: (layer, signal) =>
            audit.auditOrCondemn(st, image.index, image.layers.findIndex((l) => l.diffId === layer.diffId), layer, { cacheDir: image.cacheDir, logger: log, signal }),
        } : {}),
      })
      : undefined;
    let closing: Promise<void> | undefined;
    const closeAll = (): Promise<void> => {
      closing ??= (async () => {
        metrics?.close();
        await profile.finish();
        await background?.stop();
        await st.close({ flushMs: FLUSH_MS }).catch((err: unknown) => log.warn({ err }, 'mount: closing storage failed'));
        await image.close().catch((err: unknown) => log.warn({ err }, 'mount: closing the image failed'));
        log.info({ mountpoint }, 'mount: stopped');
      })();
      return closing;
    };
    const done = m.closed.then(closeAll);
    return {
      mountpoint, image, storage: st, source, fs, mount: m, done, profile, ...(background ? { background } : {}),
      async stop() {
        await m.unmount();
        await done;
      },
    };
  } catch (err) {
    cancelPrestartedReaders();
    metrics?.close();
    await profileWork?.finish().catch(() => undefined);
    await storage?.close().catch(() => undefined);
    await image.close().catch(() => undefined);
    throw err;
  }
}

type LayerAudit = typeof LayerAuditModule;

/** auditOrCondemn, its module imported on the first call. */
function lazyAudit(): Pick<LayerAudit, 'auditOrCondemn'> {
  let loaded: Promise<LayerAudit> | undefined;
  return {
    auditOrCondemn: async (...args) => {
      loaded ??= import('../storage/layer-audit.js');
      return (await loaded).auditOrCondemn(...args);
    },
  };
}

/** The line printed when a mount is ready. */
export function readyLine(running: RunningMount): string {
  const { index, origin } = running.image;
  const how = {
    indexed: 'indexed now', cache: 'index from the cache', shared: 'index from the shared cache',
    registry: 'index published with the image', file: `index ${running.image.indexFile}`,
  }[origin];
  return `clip: mounted ${index.image.reference} on ${running.mountpoint} (${index.entryCount} entries, ${how})`;
}
