/**
 * A mount's profile work, started with the mount and finished before its storage closes:
 * - 'auto' (every mount): look for a profile of this index (local cache, shared cache, registry)
 *   without delaying the mount; if one is found, prefetch it; if none is, record the start and keep
 *   what was recorded in the local and the shared cache, so the next node starts with a profile.
 * - 'record' (`clip profile`): record until the mount stops, whatever profile exists, and keep it.
 * - 'off': nothing (a mount taken over after a restart: its start is long past).
 */
import type { ImageIndex } from '../index/reader.js';
import type { RegistryRepository } from '../oci/registry-source.js';
import type { BlobStore } from '../oci/types.js';
import type { Storage } from '../storage/storage.js';
import type { LayerRecord } from '../storage/types.js';
import { untilAborted } from '../util/abort.js';
import { silentLogger, type Logger } from '../util/log.js';
import { wholeNumberSetting } from '../util/setting.js';
import { encodeProfile, type ProfileRange, type StartupProfile } from './format.js';
import { planPrefetch, prefetch, type PrefetchResult } from './prefetch.js';
import { ProfileRecorder } from './recorder.js';
import { findProfile, indexDigestOf, storeLocalProfile, storeSharedProfile, type FetchedProfile, type FoundProfile } from './store.js';

export type ProfileMode = 'auto' | 'record' | 'off';

/** Prefetch pieces in flight at once: at 25 ms RTT, 3 left python waiting on their round trips (bench/index/RESULTS.md). */
const DEFAULT_CONCURRENCY = 8;

/** CLIP_PREFETCH_CONCURRENCY (1–16): for comparisons (bench/index/profiled-mount.ts VARIANTS). */
function concurrencyFromEnv(): number | undefined {
  return wholeNumberSetting({ env: 'CLIP_PREFETCH_CONCURRENCY' }, 1, 16, 'pieces');
}

/** What a filesystem offers to be recorded (ImageFilesystem.recorder). */
export interface RecordableFs {
  recorder: { readonly active: boolean; note(layer: number, offset: number, length: number, ino: number): void } | undefined;
}

export interface MountProfileOptions {
  mode: ProfileMode;
  cacheDir: string;
  index: ImageIndex;
  layers: LayerRecord[];
  fs: RecordableFs;
  storage: Storage;
  /** Where the image's blobs come from: a registry repository is also looked in for profiles. */
  blobs?: BlobStore;
  /** The registry's latest profile, fetched while the index was (OpenedImage.earlyProfile). */
  earlyProfile?: Promise<FetchedProfile | undefined>;
  /** Recording ends after this long without a new range ('auto'; default 2000 ms). */
  quietMs?: number;
  /** Prefetch pieces in flight (default 8). */
  concurrency?: number;
  logger?: Logger;
}

export interface MountProfile {
  /** Settles with where a profile was found (undefined when none, or not looked for). */
  readonly found: Promise<FoundAt | undefined>;
  /** Settles when the prefetch of a found profile is over. */
  readonly prefetched: Promise<PrefetchResult | undefined>;
  /** Settles with where the recording was kept, once it ended (undefined when nothing was kept). */
  readonly saved: Promise<string | undefined>;
  /** Stop recording (keeping what was recorded) and prefetching; wait for both. */
  finish(): Promise<void>;
}

/** Where a profile was found, without the profile: its windows are the source's once handed over. */
export type FoundAt = Pick<FoundProfile, 'origin' | 'from'>;

export function startMountProfile(opts: MountProfileOptions): MountProfile {
  const log = opts.logger ?? silentLogger;
  const none: MountProfile = { found: Promise.resolve(undefined), prefetched: Promise.resolve(undefined), saved: Promise.resolve(undefined), finish: async () => undefined };
  if (opts.mode === 'off') return none;
  const concurrency = opts.concurrency ?? concurrencyFromEnv() ?? DEFAULT_CONCURRENCY; // a bad value fails the mount now
  const stop = new AbortController();
  const target = {
    manifestDigest: opts.index.image.manifestDigest,
    indexDigest: indexDigestOf(opts.index.buffer),
    layers: opts.layers.map((l) => l.diffId),
  };
  let ended!: (ranges: ProfileRange[]) => void;
  const recorded = new Promise<ProfileRange[]>((r) => (ended = r));
  const recorder = new ProfileRecorder({
    quietMs: opts.mode === 'record' ? 0 : opts.quietMs ?? 2000,
    onEnd: (ranges, why) => {
      log.info({ ranges: ranges.length, why }, 'profile: recording ended');
      // Cut short by other mounts' reads: a part of a start, which would stand for it on every node.
      ended(why === 'budget' ? [] : ranges);
    },
  });
  opts.fs.recorder = recorder;

  // `looked` and `lookedInTime` settle with the whole profile (its windows, its bytes): what lives
  // as long as the mount (`finish`, the stop signal's listeners) must not reach them.
  const looked: Promise<FoundProfile | undefined> = opts.mode === 'record'
    ? Promise.resolve(undefined)
    : findProfile(target, {
      cacheDir: opts.cacheDir, logger: log, signal: stop.signal,
      ...(opts.earlyProfile ? { early: opts.earlyProfile } : {}),
      ...(opts.storage.remote ? { remote: opts.storage.remote } : {}),
      ...(opts.blobs ? { repo: () => registryOf(opts.blobs!) } : {}),
    }).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'profile: lookup failed');
      return undefined;
    });
  // Once the mount stops, nothing waits for a lookup still under way (a slow registry).
  const lookedInTime = untilAborted(looked, stop.signal).catch(() => undefined);
  const found = looked.then((f): FoundAt | undefined => f && { origin: f.origin, from: f.from });
  const foundInTime = lookedInTime.then((f) => f !== undefined);

  const prefetched = lookedInTime.then(async (f) => {
    if (!f || stop.signal.aborted) return undefined;
    // A profile exists: this start is not recorded, and every read may stay in the reader thread.
    recorder.discard();
    opts.fs.recorder = undefined;
    ended([]);
    log.info({ profile: f.from, ranges: f.profile.ranges.length }, 'profile: found, prefetching');
    if (f.origin !== 'cache') void storeLocalProfile(opts.cacheDir, target.manifestDigest, f.bytes).catch((err: unknown) => log.debug({ err }, 'profile: cannot keep it locally'));
    // Learned checkpoints first, so the prefetch and every demand read inflate from them.
    for (const [i, list] of f.profile.learned) {
      const layer = opts.layers[i];
      if (!layer) continue;
      try {
        opts.storage.addLearnedCheckpoints(layer, list);
      } catch (err) {
        log.warn({ err: (err as Error).message, layer: layer.diffId, profile: f.from }, 'profile: learned checkpoints refused');
      }
    }
    const pieces = planPrefetch(f.profile.ranges, opts.layers);
    const result = await prefetch(opts.storage, pieces, { concurrency, signal: stop.signal, logger: log });
    log.info({ ...result, profile: f.from }, 'profile: prefetch done');
    // Kept for later fetches from the source, deflated: -1 MB a profiled mount (bench/server/RESULTS.md session 11).
    if (!stop.signal.aborted) await opts.storage.packLearned().catch((err: unknown) => log.debug({ err }, 'profile: cannot pack the learned windows'));
    return result;
  }).catch((err: unknown) => {
    log.warn({ err: (err as Error).message }, 'profile: prefetch failed');
    return undefined;
  });

  const saved = recorded.then(async (ranges) => {
    if (ranges.length === 0 || (await foundInTime)) return undefined;
    const profile: StartupProfile = { ...target, ranges, learned: new Map() };
    opts.layers.forEach((layer, i) => {
      const list = opts.storage.learnedCheckpoints(layer);
      if (list.length) profile.learned.set(i, list);
    });
    const bytes = encodeProfile(profile);
    const file = await storeLocalProfile(opts.cacheDir, target.manifestDigest, bytes);
    if (opts.storage.remote) await storeSharedProfile(opts.storage.remote, target.manifestDigest, bytes);
    log.info({ file, ranges: ranges.length, bytes: bytes.length }, 'profile: recorded and kept');
    return file;
  }).catch((err: unknown) => {
    log.warn({ err: (err as Error).message }, 'profile: cannot keep the recording');
    return undefined;
  }).finally(() => {
    // Kept, not kept, or another profile found: what was learned for it has no reader any more.
    opts.storage.stopLearning();
  });

  return {
    found, prefetched, saved,
    async finish() {
      stop.abort();
      recorder.stop();
      opts.fs.recorder = undefined;
      await Promise.all([prefetched, saved]);
    },
  };
}

/**
 * The registry repository behind a mount's blob store, if it is one: a store opened on first use
 * (mount/open-image.ts) is opened now; the registry code loads only when a profile is looked for there.
 */
async function registryOf(blobs: BlobStore): Promise<RegistryRepository | undefined> {
  const lazy = blobs as BlobStore & { store?: () => Promise<BlobStore> };
  // A layout is no registry: its store does not load the registry code (undici) for nothing.
  if (blobs.location.startsWith('oci:')) return undefined;
  const store = typeof lazy.store === 'function' ? await lazy.store() : blobs;
  const registry = await import('../oci/registry-source.js');
  return store instanceof registry.RegistryRepository ? store : undefined;
}
