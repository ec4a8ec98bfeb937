/**
 * containerd's Snapshotter, as the overlayfs snapshotter behaves (a directory per snapshot, overlay
 * mounts of the parents' directories), plus remote layers: a Prepare whose labels name a layer of
 * an image with a clip index commits the target snapshot at once with no directory of its own and
 * answers AlreadyExists, so containerd fetches and unpacks nothing. A snapshot on top of such a
 * chain gets the image's clip mount (its merged view, mounted once per image) as its lowest
 * lowerdir.
 */
import { mkdir, readdir, rm, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../util/log.js';
import { alreadyExists, notFound, SnapshotError } from './errors.js';
import { parseFilters } from './filters.js';
import type { ImageMounts } from './image-mounts.js';
import type { SnapshotterMetrics } from './metrics.js';
import { LABEL_CLIP_IMAGE, LABEL_REMOTE, LABEL_TARGET, type RemoteImages } from './remote.js';
import type { Kind, RemoteLayer, SnapshotRecord, SnapshotStore } from './store.js';
import { unpackRemoteLayer } from './unpack.js';

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface Info {
  name: string;
  parent: string;
  kind: Kind;
  created: number;
  updated: number;
  labels: Record<string, string>;
}

export interface Usage {
  size: number;
  inodes: number;
}

/** What a snapshot's mounts are made of, topmost first: directories and at most one image mount, last. */
type Lower = { dir: string } | { image: RemoteLayer };

/** How many images restore() mounts at once (each is a request to the node's server, which opens its index). */
export const RESTORE_MOUNTS = 4;

export class Snapshotter {
  private readonly log: Logger;

  constructor(
    private readonly root: string,
    private readonly store: SnapshotStore,
    private readonly remote: RemoteImages,
    private readonly images: ImageMounts,
    logger?: Logger,
    private readonly insecureRegistries: string[] = [],
    private readonly metrics?: SnapshotterMetrics,
  ) {
    this.log = logger ?? silentLogger;
  }

  private dir(id: number): string {
    return join(this.root, 'snapshots', String(id));
  }

  private fsDir(id: number): string {
    return join(this.dir(id), 'fs');
  }

  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    if (labels[LABEL_TARGET]) {
      const target = labels[LABEL_TARGET];
      if (this.store.get(target)) throw alreadyExists(target);
      const remote = await this.remote.lookup(labels);
      if (remote) {
        this.commitRemote(target, parent, labels, remote);
        this.metrics?.remoteLayer(remote.manifest);
        this.log.info({ target, layer: remote.position + 1, of: remote.layers, layerDigest: remote.layerDigest, image: remote.image, manifest: remote.manifest }, 'snapshotter: remote snapshot prepared');
        // The image is being pulled, and a container will follow: it is mounted now (its
        // startup-profile prefetch with it), from its first remote layer on, while containerd goes
        // through the other layers, not at the container's Prepare, so that `ctr run` only lays an
        // overlay over a mount already serving. Not awaited: the pull goes on at once; a Prepare
        // on the image waits for this mount (ensure() is serialized per image and keeps a live
        // mount), and a failure here is logged and tried again there. The mount is kept once the
        // image's last layer is committed (imagesInUse); a pull that stops before that leaves it
        // to the next Remove or Cleanup.
        void this.images.ensure(remote).catch(() => undefined);
        throw new SnapshotError('AlreadyExists', `target snapshot ${target}: already exists`);
      }
    }
    return this.create('ACTIVE', key, parent, labels);
  }

  view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.create('VIEW', key, parent, labels);
  }

  private commitRemote(target: string, parent: string, labels: Record<string, string>, remote: RemoteLayer): void {
    const now = Date.now();
    this.store.transaction((tx) => {
      if (tx.get(target)) throw alreadyExists(target);
      if (parent && !tx.get(parent)) throw new SnapshotError('NotFound', `parent snapshot ${parent}: not found`);
      if (parent && tx.get(parent)!.kind !== 'COMMITTED') throw new SnapshotError('InvalidArgument', `parent snapshot ${parent} is not committed`);
      tx.put(target, {
        id: tx.nextId(), kind: 'COMMITTED', parent, created: now, updated: now, usage: { size: 0, inodes: 0 }, remote,
        labels: { ...labels, [LABEL_REMOTE]: 'remote snapshot', [LABEL_CLIP_IMAGE]: `${remote.location}@${remote.manifest}` },
      });
    });
  }

  private async create(kind: Kind, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    if (!key) throw new SnapshotError('InvalidArgument', 'a snapshot key is required');
    await this.materialize(parent);
    const now = Date.now();
    const rec = this.store.transaction((tx): SnapshotRecord => {
      if (tx.get(key)) throw alreadyExists(key);
      if (parent) {
        const p = tx.get(parent);
        if (!p) throw new SnapshotError('NotFound', `parent snapshot ${parent}: not found`);
        if (p.kind !== 'COMMITTED') throw new SnapshotError('InvalidArgument', `parent snapshot ${parent} is not committed`);
      }
      const r: SnapshotRecord = { id: tx.nextId(), kind, parent, labels, created: now, updated: now };
      tx.put(key, r);
      return r;
    });
    try {
      await mkdir(this.fsDir(rec.id), { recursive: true, mode: 0o755 });
      if (kind === 'ACTIVE') await mkdir(join(this.dir(rec.id), 'work'), { recursive: true, mode: 0o700 });
      return await this.mountsOf(rec);
    } catch (err) {
      // Nothing half-made stays behind: the record goes, its directory with it.
      this.store.transaction((tx) => tx.remove(key));
      await rm(this.dir(rec.id), { recursive: true, force: true });
      throw err;
    }
  }

  private readonly materializing = new Map<string, Promise<void>>();

  /**
   * Make every remote layer below `parent` that is not its image's last (and so has no image mount
   * of its own) an ordinary directory, down to the first remote layer that ends its image (whose
   * mount then serves the rest) or the bottom.
   */
  private async materialize(parent: string): Promise<void> {
    for (let key = parent; key;) {
      const rec = this.store.get(key);
      if (!rec) return; // create() reports it
      if (rec.remote) {
        if (rec.remote.position === rec.remote.layers - 1) return;
        let p = this.materializing.get(key);
        if (!p) {
          p = this.materializeOne(key, rec).finally(() => this.materializing.delete(key));
          this.materializing.set(key, p);
        }
        await p;
      }
      key = rec.parent;
    }
  }

  private async materializeOne(key: string, rec: SnapshotRecord): Promise<void> {
    const remote = rec.remote!;
    const image = `${remote.location}@${remote.manifest}`;
    this.log.info({ key, image, layer: remote.position + 1, layerDigest: remote.layerDigest }, 'snapshotter: a snapshot stands on a remote layer that is not its image\'s last; unpacking that layer');
    await mkdir(this.dir(rec.id), { recursive: true, mode: 0o700 });
    try {
      await unpackRemoteLayer(remote, this.fsDir(rec.id), this.insecureRegistries);
    } catch (err) {
      this.metrics?.imageError(remote.manifest, 'unpack');
      throw new SnapshotError('Unavailable', `cannot unpack layer ${remote.position + 1} (${remote.layerDigest ?? 'digest not recorded'}) of ${image} for snapshot ${key}: ${(err as Error).message}`);
    }
    const usage = await diskUsage(this.fsDir(rec.id));
    this.store.transaction((tx) => {
      const cur = tx.get(key);
      if (!cur || cur.id !== rec.id) return;
      const { remote: _remote, ...rest } = cur;
      const labels = { ...cur.labels };
      delete labels[LABEL_REMOTE];
      tx.put(key, { ...rest, labels, usage, updated: Date.now() });
    });
  }

  /** The parents' layers, topmost first: directories down to the first remote layer, which must end its image. */
  private lowers(parent: string): Lower[] {
    const out: Lower[] = [];
    for (let key = parent; key;) {
      const rec = this.store.get(key);
      if (!rec) throw new SnapshotError('NotFound', `parent snapshot ${key}: not found`);
      if (rec.remote) {
        if (rec.remote.position !== rec.remote.layers - 1) {
          throw new SnapshotError('FailedPrecondition',
            `snapshot ${key} is layer ${rec.remote.position + 1} of ${rec.remote.layers} of ${rec.remote.location}@${rec.remote.manifest}, served lazily as that whole image; ` +
            'a snapshot on only its first layers cannot be mounted (clip mounts whole images)');
        }
        out.push({ image: rec.remote });
        return out;
      }
      out.push({ dir: this.fsDir(rec.id) });
      key = rec.parent;
    }
    return out;
  }

  private async lowerPaths(lowers: Lower[]): Promise<string[]> {
    const paths: string[] = [];
    for (const l of lowers) paths.push('dir' in l ? l.dir : await this.images.ensure(l.image));
    return paths;
  }

  private async mountsOf(rec: SnapshotRecord): Promise<Mount[]> {
    if (rec.kind === 'COMMITTED') throw new SnapshotError('FailedPrecondition', 'a committed snapshot has no mounts');
    const lowers = await this.lowerPaths(this.lowers(rec.parent));
    const ro = rec.kind === 'VIEW';
    if (lowers.length === 0) return [{ type: 'bind', source: this.fsDir(rec.id), target: '', options: [ro ? 'ro' : 'rw', 'rbind'] }];
    if (ro && lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, target: '', options: ['ro', 'rbind'] }];
    const options = ro ? [] : [`workdir=${join(this.dir(rec.id), 'work')}`, `upperdir=${this.fsDir(rec.id)}`];
    options.push(`lowerdir=${lowers.join(':')}`);
    return [{ type: 'overlay', source: 'overlay', target: '', options }];
  }

  async mounts(key: string): Promise<Mount[]> {
    const rec = this.store.get(key);
    if (!rec) throw notFound(key);
    return this.mountsOf(rec);
  }

  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    const rec = this.store.get(key);
    if (!rec) throw notFound(key);
    if (rec.kind !== 'ACTIVE') throw new SnapshotError('FailedPrecondition', `snapshot ${key} is not active`);
    const usage = await diskUsage(this.fsDir(rec.id));
    this.store.transaction((tx) => {
      const cur = tx.get(key);
      if (!cur || cur.id !== rec.id) throw notFound(key);
      if (tx.get(name)) throw alreadyExists(name);
      tx.remove(key);
      tx.put(name, { ...cur, kind: 'COMMITTED', labels: { ...cur.labels, ...labels }, updated: Date.now(), usage });
    });
    // A committed snapshot is never written again: its work directory goes.
    await rm(join(this.dir(rec.id), 'work'), { recursive: true, force: true });
  }

  async remove(key: string): Promise<void> {
    const rec = this.store.transaction((tx) => {
      const r = tx.get(key);
      if (!r) throw notFound(key);
      if (tx.children(key).length) throw new SnapshotError('FailedPrecondition', `snapshot ${key} has children`);
      tx.remove(key);
      return r;
    });
    await rm(this.dir(rec.id), { recursive: true, force: true });
    await this.releaseUnused();
  }

  stat(key: string): Info {
    const rec = this.store.get(key);
    if (!rec) throw notFound(key);
    return infoOf(key, rec);
  }

  update(info: { name: string; labels: Record<string, string> }, paths: string[]): Info {
    return this.store.transaction((tx) => {
      const rec = tx.get(info.name);
      if (!rec) throw notFound(info.name);
      let labels = { ...rec.labels };
      if (paths.length === 0) labels = { ...info.labels };
      for (const p of paths) {
        if (p === 'labels') labels = { ...info.labels };
        else if (p.startsWith('labels.')) {
          const k = p.slice('labels.'.length);
          if (info.labels[k] !== undefined) labels[k] = info.labels[k];
          else delete labels[k];
        } else throw new SnapshotError('InvalidArgument', `cannot update field ${p} of snapshot ${info.name}`);
      }
      const next = { ...rec, labels, updated: Date.now() };
      tx.put(info.name, next);
      return infoOf(info.name, next);
    });
  }

  list(filters: string[]): Info[] {
    const match = parseFilters(filters);
    return this.store.all().map(([k, r]) => infoOf(k, r))
      .filter((i) => match({ name: i.name, parent: i.parent, kind: i.kind.toLowerCase(), labels: i.labels }));
  }

  async usage(key: string): Promise<Usage> {
    const rec = this.store.get(key);
    if (!rec) throw notFound(key);
    if (rec.kind === 'ACTIVE') return diskUsage(this.fsDir(rec.id));
    return rec.usage ?? { size: 0, inodes: 0 };
  }

  /** Remove directories no snapshot owns (a crash between a record and its directory), and unused image mounts. */
  async cleanup(): Promise<void> {
    const ids = new Set(this.store.all().map(([, r]) => String(r.id)));
    const names = await readdir(join(this.root, 'snapshots')).catch(() => [] as string[]);
    for (const n of names) if (!ids.has(n)) await rm(join(this.root, 'snapshots', n), { recursive: true, force: true });
    await this.releaseUnused();
  }

  /**
   * Images a snapshot needs mounted: those some active or view snapshot stands on, and those whose
   * last layer is a committed remote snapshot (the image is pulled: it stays mounted, ready for
   * its next container, until containerd removes the image's snapshots).
   */
  private imagesInUse(): Map<string, RemoteLayer> {
    const used = new Map<string, RemoteLayer>();
    for (const [, rec] of this.store.all()) {
      if (rec.kind === 'COMMITTED') {
        if (rec.remote && rec.remote.position === rec.remote.layers - 1) used.set(rec.remote.manifest, rec.remote);
        continue;
      }
      try {
        const last = this.lowers(rec.parent).at(-1);
        if (last && 'image' in last) used.set(last.image.manifest, last.image);
      } catch {
        // a chain that cannot be mounted uses no image
      }
    }
    return used;
  }

  private async releaseUnused(): Promise<void> {
    for (const manifest of this.images.mounted()) {
      await this.images.release(manifest, () => this.imagesInUse().has(manifest)).catch((err: unknown) => this.log.warn({ manifest, err: (err as Error).message }, 'snapshotter: unmounting an unused image failed'));
    }
  }

  /**
   * On start: every image a snapshot still uses is mounted again (a live mount is kept as it is),
   * RESTORE_MOUNTS at a time rather than one after another: a node with many pulled images
   * serves its first call after the slowest few mounts, not after all of them in turn.
   */
  async restore(): Promise<void> {
    await mkdir(join(this.root, 'snapshots'), { recursive: true, mode: 0o700 });
    const images = [...this.imagesInUse().values()];
    const next = (): RemoteLayer | undefined => images.shift();
    const worker = async (): Promise<void> => {
      for (let image = next(); image; image = next()) {
        const { location, manifest } = image;
        await this.images.ensure(image).catch((err: unknown) => this.log.error({ image: `${location}@${manifest}`, err: (err as Error).message }, 'snapshotter: cannot mount an image again'));
      }
    };
    await Promise.all(Array.from({ length: Math.min(RESTORE_MOUNTS, images.length) }, worker));
    await this.releaseUnused();
  }
}

function infoOf(name: string, r: SnapshotRecord): Info {
  return { name, parent: r.parent, kind: r.kind, created: r.created, updated: r.updated, labels: r.labels };
}

/** Bytes (of allocated blocks) and inodes under `dir`, each inode counted once. */
async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: true }).catch(() => undefined);
    if (!st) return;
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) for (const n of await readdir(p).catch(() => [] as string[])) await walk(join(p, n));
  };
  await walk(dir);
  return { size, inodes: seen.size };
}
