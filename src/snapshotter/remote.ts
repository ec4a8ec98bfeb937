/**
 * Whether a layer containerd is about to unpack can be served lazily instead: the remote-snapshot
 * labels name the image and the layer (CRI's `containerd.io/snapshot/cri.*`, or ctr-remote's
 * `containerd.io/snapshot/remote/stargz.*`); the image is resolved, the layer must sit in it where
 * the target chain ID says, and a clip index for that manifest must be found (local cache, shared
 * cache, registry referrers). Nothing is indexed here: an image without an index is unpacked by
 * containerd as usual.
 */
import { createHash } from 'node:crypto';
import { openImage, RegistryRepository, type ResolvedImage } from '../oci/index.js';
import { findPublishedIndex, findSharedIndex, isCondemned, storeSharedIndex } from '../storage/index-artifact.js';
import { loadCachedIndex, storeCachedIndex } from '../storage/indexer.js';
import type { RedisChunkCache } from '../storage/remote-cache.js';
import { silentLogger, type Logger } from '../util/log.js';
import type { SnapshotterMetrics } from './metrics.js';
import type { RemoteLayer } from './store.js';

export const LABEL_TARGET = 'containerd.io/snapshot.ref';
export const LABEL_REMOTE = 'containerd.io/snapshot/remote';
export const LABEL_CRI_REF = 'containerd.io/snapshot/cri.image-ref';
export const LABEL_CRI_LAYER = 'containerd.io/snapshot/cri.layer-digest';
export const LABEL_CRI_LAYERS = 'containerd.io/snapshot/cri.image-layers';
export const LABEL_STARGZ_REF = 'containerd.io/snapshot/remote/stargz.reference';
export const LABEL_STARGZ_LAYER = 'containerd.io/snapshot/remote/stargz.digest';
/** What a remote snapshot's clip label says: the image manifest it is served from. */
export const LABEL_CLIP_IMAGE = 'containerd.io/snapshot/clip.image';

/** The image reference and layer digest the labels name, if they name both. */
export function remoteSource(labels: Record<string, string>): { ref: string; layer: string } | undefined {
  const ref = labels[LABEL_CRI_REF] ?? labels[LABEL_STARGZ_REF];
  const layer = labels[LABEL_CRI_LAYER] ?? labels[LABEL_STARGZ_LAYER];
  return ref && layer ? { ref, layer } : undefined;
}

/** containerd's chain IDs of an image's layers (identity.ChainIDs over the diff_ids). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(prev ? `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}` : d);
  }
  return out;
}

export interface RemoteLookupOptions {
  cacheDir: string;
  remoteCache?: string;
  insecureRegistries?: string[];
  logger?: Logger;
  metrics?: SnapshotterMetrics;
}

/** How long a resolved reference is reused: one pull asks for each of its layers in turn. */
const RESOLVE_TTL_MS = 60_000;

export class RemoteImages {
  private readonly resolved = new Map<string, { at: number; image: Promise<ResolvedImage> }>();
  private readonly indexed = new Map<string, Promise<boolean>>();
  private readonly log: Logger;

  constructor(private readonly opts: RemoteLookupOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  /** The remote layer for a Prepare with these labels, or undefined (then containerd unpacks it). */
  async lookup(labels: Record<string, string>): Promise<RemoteLayer | undefined> {
    const target = labels[LABEL_TARGET];
    const src = remoteSource(labels);
    if (!target || !src) return undefined;
    let image: ResolvedImage;
    try {
      image = await this.resolve(src.ref);
    } catch (err) {
      this.log.warn({ image: src.ref, layer: src.layer, err: (err as Error).message }, 'snapshotter: cannot resolve the image; the layer is unpacked');
      this.opts.metrics?.unpackedLayer(src.ref, 'unresolved');
      return undefined;
    }
    const chains = chainIds(image.layers.map((l) => l.diffId));
    const position = image.layers.findIndex((l, i) => l.descriptor.digest === src.layer && chains[i] === target);
    if (position < 0) {
      this.log.warn({ image: src.ref, layer: src.layer, target }, 'snapshotter: the layer is not where the image has it (did the tag move?); the layer is unpacked');
      this.resolved.delete(src.ref);
      this.opts.metrics?.unpackedLayer(src.ref, 'moved');
      return undefined;
    }
    if (!(await this.hasIndex(image))) {
      this.log.info({ image: src.ref, layer: src.layer }, 'snapshotter: no clip index for the image; the layer is unpacked');
      this.opts.metrics?.unpackedLayer(src.ref, 'no-index');
      return undefined;
    }
    this.opts.metrics?.named(image.manifestDigest, src.ref);
    return { manifest: image.manifestDigest, location: image.location, position, layers: image.layers.length, layerDigest: src.layer, image: src.ref };
  }

  private resolve(ref: string): Promise<ResolvedImage> {
    const hit = this.resolved.get(ref);
    if (hit && Date.now() - hit.at < RESOLVE_TTL_MS) return hit.image;
    const image = (async () => {
      const source = openImage(ref, { insecureRegistries: this.opts.insecureRegistries ?? [], logger: this.log });
      try {
        return await source.resolve();
      } finally {
        await source.close?.();
      }
    })();
    this.resolved.set(ref, { at: Date.now(), image });
    image.catch(() => this.resolved.delete(ref));
    return image;
  }

  /** A usable index is in the local cache, or is put there from the shared cache or the registry. */
  hasIndex(image: ResolvedImage): Promise<boolean> {
    let found = this.indexed.get(image.manifestDigest);
    if (!found) {
      found = this.findIndex(image).catch((err: unknown) => {
        this.log.warn({ image: image.reference, err: (err as Error).message }, 'snapshotter: looking for a clip index failed');
        return false;
      });
      this.indexed.set(image.manifestDigest, found);
      // Only a found index is remembered: one published later is found on the next pull.
      void found.then((ok) => !ok && this.indexed.delete(image.manifestDigest));
    }
    return found;
  }

  private async findIndex(image: ResolvedImage): Promise<boolean> {
    const { cacheDir } = this.opts;
    if (await loadCachedIndex(cacheDir, image.manifestDigest, this.log)) return true;
    const remote: RedisChunkCache | undefined = this.opts.remoteCache
      ? await (await import('../storage/remote-cache.js')).RedisChunkCache.connect({ url: this.opts.remoteCache, logger: this.log })
      : undefined;
    const source = openImage(image.reference, { insecureRegistries: this.opts.insecureRegistries ?? [], logger: this.log });
    try {
      const accept = async (bytes: Buffer): Promise<boolean> => !(await isCondemned(cacheDir, bytes, remote));
      const shared = remote ? await findSharedIndex(remote, image, this.log, accept) : undefined;
      if (shared) {
        await storeCachedIndex(cacheDir, image.manifestDigest, shared.bytes, this.log);
        return true;
      }
      if (!(source instanceof RegistryRepository)) return false;
      const published = await findPublishedIndex(source, image, this.log, accept);
      if (!published) return false;
      await storeCachedIndex(cacheDir, image.manifestDigest, published.bytes, this.log);
      if (remote) await storeSharedIndex(remote, image.manifestDigest, published.bytes, published.packed);
      this.log.info({ image: image.reference, artifact: published.artifact }, 'snapshotter: published clip index found');
      return true;
    } finally {
      await source.close?.();
      await remote?.close();
    }
  }
}
