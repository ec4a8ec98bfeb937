/**
 * An image argument as the commands and the mount take it: an index file is loaded as it is (its
 * blobs are reached lazily through the location it records, so everything already cached is served
 * without the registry); an image reference is resolved, and its cached index used or made.
 */
// Registry, indexing and storage code is imported where it is used: a command answered from an
// index file alone (ls, stat) then loads none of it.
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ImageIndex } from '../index/reader.js';
import type { BlobStore, ImageSource, OpenOptions, Platform, RegistryRepository } from '../oci/index.js';
import type { FetchedProfile } from '../profile/store.js';
import { defaultCacheDir } from '../storage/cache-dir.js';
import { indexLayers } from '../storage/index-layers.js';
import type { IndexProgress } from '../storage/indexer.js';
import type { IndexOrigin } from '../storage/index-resolver.js';
import type { CheckpointSource, ResumableLayer, Storage } from '../storage/index.js';
import { ClipError } from '../util/errors.js';
import { indexFileKind } from './index-file.js';
import type { Logger } from '../util/log.js';

export interface ImageArgOptions {
  cacheDir?: string;
  platform?: Platform;
  registry?: OpenOptions;
  /** The shared cache, where indexes are looked for and kept too. */
  remoteCache?: string;
  /** Look for a published index (shared cache, registry) before indexing; default true. */
  discover?: boolean;
  logger?: Logger;
  /** Progress of indexing when the image has no index yet (default: none). */
  onProgress?: (event: IndexProgress) => void;
  /** The image as a caller resolved it already (see ResolvedHandoff): nothing is asked of the registry to open it. */
  resolved?: ResolvedHandoff;
  /** false: an image with no index to find fails (ENOINDEX) rather than being indexed (default true). */
  mayIndex?: boolean;
  /**
   * A mount's: fetch the registry's profile of the image while its index is looked for, when the
   * local cache has none and there is no shared cache to look in first (OpenedImage.earlyProfile).
   */
  profileAhead?: boolean;
  /**
   * A mount's: return once the index is checked, its local cache copy still being written
   * (OpenedImage.indexStored, awaited before the mount attaches).
   */
  deferIndexStore?: boolean;
}

/**
 * What a caller that resolved an image hands to the process mounting it (the node's server), so that
 * it does not resolve it again: the index file it found for the manifest, and where the blobs are
 * read from (the repository the caller reached, not the one the index's publisher recorded).
 */
export interface ResolvedHandoff {
  indexFile: string;
  manifest: string;
  location: string;
  /**
   * The checksum (ImageIndex.checksum) of the index file as the caller checked it whole: a file
   * with that checksum is not checked field by field again (optional: without it, it is).
   */
  checked?: string;
}

export interface OpenedImage {
  index: ImageIndex;
  /**
   * 'file': the argument was an index file; 'cache': the local cache's; 'shared': the shared
   * cache's; 'registry': published with the image; 'indexed': made just now.
   */
  origin: 'file' | IndexOrigin;
  /** The index file it was loaded from, when there is one (with indexStored: once that settles). */
  indexFile?: string;
  /**
   * With deferIndexStore: the index's local cache copy being written; sets indexFile when written.
   * Rejects as the write failed: a command must not go on (a mount not attach) before it settles.
   */
  indexStored?: Promise<void>;
  /** Where the layers' blobs are read from, when an image reference was resolved (BlobStore.location). */
  location?: string;
  cacheDir: string;
  /** Where the layers' blobs are read from: opened on first use. */
  blobs: BlobStore;
  /** The index's layers as the read path wants them. */
  layers: ResumableLayer[];
  /** With profileAhead: the registry's latest profile of the image, fetched beside the index (not checked yet). */
  earlyProfile?: Promise<FetchedProfile | undefined>;
  close(): Promise<void>;
}

/**
 * The blob store at a recorded location; a layout's loads only the layout code: the registry
 * client (undici, node:http) would stay in a server's memory for nothing (issue 16).
 */
async function openBlobStoreAt(location: string, opts: OpenOptions): Promise<BlobStore> {
  const parsed = (await import('../oci/reference.js')).parseLocation(location);
  if (parsed.kind === 'layout') return new (await import('../oci/layout.js')).LayoutSource(parsed.dir);
  return (await import('../oci/index.js')).openBlobStore(location, opts);
}

/** A BlobStore opened on first use, so a command served from the caches never touches the registry. */
class LazyBlobStore implements BlobStore {
  private opened: Promise<BlobStore> | undefined;

  constructor(readonly location: string, private readonly opts: OpenOptions) {}

  /** The store itself, opened now if it was not yet. */
  store(): Promise<BlobStore> {
    return this.get();
  }

  private get(): Promise<BlobStore> {
    this.opened ??= openBlobStoreAt(this.location, this.opts);
    return this.opened;
  }

  /** Load the registry code now (no request is made), so that the first read does not wait for it. */
  preload(): void {
    this.get().catch(() => undefined);
  }

  async openBlob(...args: Parameters<BlobStore['openBlob']>): ReturnType<BlobStore['openBlob']> {
    return (await this.get()).openBlob(...args);
  }

  async openBlobRange(...args: Parameters<BlobStore['openBlobRange']>): ReturnType<BlobStore['openBlobRange']> {
    return (await this.get()).openBlobRange(...args);
  }

  async close(): Promise<void> {
    if (this.opened) await (await this.opened).close?.();
  }
}

/** Indexes loaded by this process, by file and version: mounts of one image share one copy. */
const loadedIndexes = new Map<string, WeakRef<ImageIndex>>();

/**
 * An index file loaded into shared memory, so that the FUSE reader thread answers from the same
 * bytes (no second copy per mount), and loaded once per file version in this process: the node
 * server's mounts of one image share it. Immutable: index files are replaced, never rewritten.
 */
export async function loadIndex(file: string, checked?: string): Promise<ImageIndex> {
  const st = await stat(file).catch(() => undefined);
  const key = st?.isFile() ? `${resolve(file)}\0${st.ino}\0${st.size}\0${st.mtimeMs}` : undefined;
  const known = key === undefined ? undefined : loadedIndexes.get(key)?.deref();
  if (known) return known;
  const read = await ImageIndex.open(file, checked); // checks the file whole (unless `checked` names it), with errors naming it
  const shared = Buffer.from(new SharedArrayBuffer(read.buffer.length));
  read.buffer.copy(shared);
  const index = new ImageIndex(shared, file, read.checksum); // the same bytes: checked once is enough
  if (key !== undefined) {
    for (const [k, ref] of loadedIndexes) if (!ref.deref()) loadedIndexes.delete(k);
    loadedIndexes.set(key, new WeakRef(index));
  }
  return index;
}

async function isLayoutDir(arg: string): Promise<boolean> {
  return stat(join(arg, 'oci-layout')).then((s) => s.isFile(), () => false);
}

/** Load or make the index for a command's IMAGE|INDEX argument. */
export async function openImageArg(arg: string, opts: ImageArgOptions = {}): Promise<OpenedImage> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const registry = { ...opts.registry, ...(opts.logger ? { logger: opts.logger } : {}) };
  if (opts.resolved) return openResolved(opts.resolved, cacheDir, registry);
  const kind = await indexFileKind(arg);
  if (kind === 'special') throw new ClipError('EINVAL', 'is not a regular file (a FIFO, socket or device cannot be an index)', { object: arg });
  if (kind === 'other-file') {
    throw new ClipError('ECORRUPT', 'is a file but not a clip index (for an image of that name, write its full reference, e.g. docker.io/library/NAME)', { object: arg });
  }
  if (kind === 'index') {
    const index = await loadIndex(arg);
    const blobs = new LazyBlobStore(index.image.location, registry);
    return { index, origin: 'file', indexFile: arg, cacheDir, blobs, layers: indexLayers(index), close: () => blobs.close() };
  }
  if (!arg.startsWith('oci:') && (await isLayoutDir(arg))) {
    throw new ClipError('EINVAL', `is an OCI image layout directory: did you mean oci:${arg}?`, { object: arg });
  }
  if (arg.endsWith('.clip') && !arg.includes(':')) {
    // Most likely a mistyped index file, not an image on Docker Hub.
    throw new ClipError('ENOTFOUND', 'no such index file (and it does not look like an image reference)', { object: arg });
  }
  const [{ openImage, RegistryRepository }, { resolveIndex }] = await Promise.all([import('../oci/index.js'), import('../storage/index-resolver.js')]);
  const source: ImageSource = openImage(arg, registry);
  // Closing the image ends an early profile fetch still under way (it would hold the close up).
  const stopEarly = new AbortController();
  const close = async (): Promise<void> => {
    stopEarly.abort();
    await source.close?.();
  };
  try {
    // Not with a shared cache: it is looked in first, and may well have the index and the profile.
    const lookIn = opts.discover !== false && !opts.remoteCache && source instanceof RegistryRepository ? source : undefined;
    const ahead: { profile?: Promise<FetchedProfile | undefined> } = {};
    const image = await source.resolve({
      ...(opts.platform ? { platform: opts.platform } : {}),
      // The registry's referrers are asked for as soon as the manifest is known, beside its config.
      ...(lookIn ? { onImageManifest: (digest: string) => { ahead.profile = lookAhead(lookIn, digest, cacheDir, opts.profileAhead === true, stopEarly.signal, opts.logger); } } : {}),
    });
    const early = ahead.profile;
    const { index, origin, file, stored } = await resolveIndex(source, image, {
      cacheDir,
      ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
      ...(opts.discover === false ? { discover: false } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.mayIndex === false ? { mayIndex: false } : {}),
      ...(opts.deferIndexStore ? { deferStore: true } : {}),
    });
    const opened: OpenedImage = {
      index, origin, ...(file ? { indexFile: file } : {}), location: image.location, cacheDir, blobs: source, layers: indexLayers(index),
      ...(early ? { earlyProfile: early } : {}),
      close,
    };
    if (stored) {
      opened.indexStored = stored.then((f) => {
        if (f) opened.indexFile = f;
      });
      opened.indexStored.catch(() => undefined); // the caller's to await (see OpenedImage.indexStored)
    }
    return opened;
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * What a resolve that will look in the registry starts once the manifest is known: the referrers
 * listing, unless the local cache has the index already (the index lookup then takes this one
 * instead of listing again, a round trip later), and with `profile`, the registry's latest profile
 * (unless the local cache has one), from the same listing.
 */
function lookAhead(repo: RegistryRepository, manifestDigest: string, cacheDir: string, profile: boolean, signal: AbortSignal, logger?: Logger): Promise<FetchedProfile | undefined> | undefined {
  void listAhead(repo, manifestDigest, cacheDir);
  return profile ? profileAhead(repo, manifestDigest, cacheDir, signal, logger) : undefined;
}

async function listAhead(repo: RegistryRepository, manifestDigest: string, cacheDir: string): Promise<void> {
  const [{ cachedIndexPath }, { listReferrers }] = await Promise.all([import('../storage/indexer.js'), import('../oci/referrers.js')]);
  if (await stat(cachedIndexPath(cacheDir, manifestDigest)).then(() => true, () => false)) return;
  // Unsignalled, so that every lookup of this resolve shares it; its failure is theirs to report.
  await listReferrers(repo, manifestDigest).catch(() => undefined);
}

/** The registry's latest profile of an image, unless the local cache has one (it is looked at first). */
async function profileAhead(repo: RegistryRepository, manifestDigest: string, cacheDir: string, signal: AbortSignal, logger?: Logger): Promise<FetchedProfile | undefined> {
  const { fetchLatestProfile, localProfilePath } = await import('../profile/store.js');
  if (await stat(localProfilePath(cacheDir, manifestDigest)).then(() => true, () => false)) return undefined;
  return fetchLatestProfile(repo, manifestDigest, logger, signal);
}

/**
 * What to hand the node's server for an image this process resolved (ResolvedHandoff), or nothing
 * when the server must resolve it itself: an index file given as such, or a relative layout path.
 */
export function handoffOf(img: OpenedImage): ResolvedHandoff | undefined {
  const location = img.location;
  if (img.origin === 'file' || !img.indexFile || !location) return undefined;
  if (location.startsWith('oci:') && !location.startsWith('oci:/')) return undefined;
  return { indexFile: resolve(img.indexFile), manifest: img.index.image.manifestDigest, location, checked: img.index.checksum };
}

async function openResolved(r: ResolvedHandoff, cacheDir: string, registry: OpenOptions): Promise<OpenedImage> {
  // A mount reads the blobs next: their code loads while the index is read and checked.
  const blobs = new LazyBlobStore(r.location, registry);
  blobs.preload();
  const index = await loadIndex(r.indexFile, r.checked);
  if (index.image.manifestDigest !== r.manifest) {
    throw new ClipError('ECORRUPT', `is the index of ${index.image.manifestDigest}, not of ${r.manifest}`, { object: r.indexFile });
  }
  return { index, origin: 'cache', indexFile: r.indexFile, location: r.location, cacheDir, blobs, layers: indexLayers(index), close: () => blobs.close() };
}

export interface ImageStorageOptions {
  remoteCache?: string;
  /** Cap on the disk cache; least recently used layers are evicted beyond it. */
  cacheMaxBytes?: number;
  readTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The storage read path over an opened image's blobs (close it before the image). Its layer files
 * and chunk fetches are shared with every other image opened so in this process (the node server's
 * mounts): a layer common to two mounted images is one open file, verified and fetched once.
 */
export async function openImageStorage(img: OpenedImage, opts: ImageStorageOptions = {}): Promise<Storage> {
  return (await openMountStorage(img, opts)).storage;
}

/** The same, with the store's source: what a mount holds of it is counted there (mountMemory). */
export async function openMountStorage(img: OpenedImage, opts: ImageStorageOptions = {}): Promise<{ storage: Storage; source: CheckpointSource }> {
  const { CheckpointSource, openStorage } = await import('../storage/index.js');
  const source = new CheckpointSource(img.blobs);
  const storage = await openStorage({
    source,
    cacheDir: img.cacheDir,
    shareLayers: true,
    ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
    ...(opts.cacheMaxBytes !== undefined ? { cacheMaxBytes: opts.cacheMaxBytes } : {}),
    ...(opts.readTimeoutMs !== undefined ? { readTimeoutMs: opts.readTimeoutMs } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  return { storage, source };
}

/**
 * Load the code every mount runs (the storage read path, the registry client, undici's HTTP
 * parser) before a mount asks for it: what a node's server kept running (`clip server start`)
 * does while it waits.
 */
export async function preloadMountCode(): Promise<void> {
  await Promise.all([import('../storage/index.js'), import('../oci/index.js').then((oci) => oci.warmHttpParser())]);
}
