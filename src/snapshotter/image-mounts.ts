/**
 * The images the snapshotter serves lazily: each mounted once (its merged view) under
 * ROOT/images/<manifest hex>/rootfs by the node's clip server (startBackground), shared as the lowerdir
 * of every container's overlay on that image, and unmounted (unmountMountpoint) when the last
 * snapshot using it is removed. The server outlives the snapshotter process, so running containers
 * keep their root filesystem while it restarts.
 */
import { readFileSync } from 'node:fs';
import { access, mkdir, rmdir, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { startBackground } from '../server/background.js';
import { cachedIndexPath } from '../storage/indexer.js';
import { unmount as unmountMountpoint } from '../server/unmount.js';
import { isFuse, mountsAt, parseMountInfo } from '../fuse/mountinfo.js';
import { isClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import type { SnapshotterMetrics } from './metrics.js';
import type { RemoteLayer } from './store.js';

/** How long a mount may take to answer statfs before it counts as dead (a restarting server takes about a second). */
const ANSWER_MS = 15_000;

export interface ImageMountOptions {
  root: string;
  cacheDir: string;
  remoteCache?: string;
  insecureRegistries?: string[];
  logger?: Logger;
  metrics?: SnapshotterMetrics;
}

export class ImageMounts {
  private readonly log: Logger;

  constructor(private readonly opts: ImageMountOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  mountpoint(manifest: string): string {
    return join(this.opts.root, 'images', manifest.replace(/^sha256:/, ''), 'rootfs');
  }

  isMounted(manifest: string): boolean {
    return mountsAt(this.mountpoint(manifest)).some(isFuse);
  }

  /**
   * Mounting and unmounting an image are serialized per image: a release that re-checks its users
   * under the lock can never unmount an image a Prepare has just handed to a new container.
   */
  private readonly locks = new Map<string, Promise<unknown>>();

  private withLock<T>(manifest: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(manifest) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(manifest, settled);
    void settled.then(() => this.locks.get(manifest) === settled && this.locks.delete(manifest));
    return next;
  }

  /** The image's mountpoint, mounting it first if it is not mounted. */
  ensure(image: Pick<RemoteLayer, 'manifest' | 'location' | 'image'>): Promise<string> {
    if (image.image) this.opts.metrics?.named(image.manifest, image.image);
    return this.withLock(image.manifest, () => this.mount(image)).catch((err: unknown) => {
      this.opts.metrics?.imageError(image.manifest, 'mount');
      this.log.error({ image: image.image ?? `${image.location}@${image.manifest}`, manifest: image.manifest, err: (err as Error).message }, 'snapshotter: cannot mount the image');
      throw err;
    });
  }

  private async mount(image: Pick<RemoteLayer, 'manifest' | 'location' | 'image'>): Promise<string> {
    const mountpoint = this.mountpoint(image.manifest);
    if (this.isMounted(image.manifest)) {
      // A live mount is kept; a stale one (its daemon died) is removed and mounted again.
      const alive = await this.answers(mountpoint);
      if (alive) return mountpoint;
      await unmountMountpoint(mountpoint, { cacheDir: this.opts.cacheDir, logger: this.log }).catch(() => undefined);
    }
    await mkdir(mountpoint, { recursive: true, mode: 0o700 });
    const ref = `${image.location}@${image.manifest}`;
    // The index found at rpull is handed over: the server opens it and serves without asking the
    // registry again (without it, the server resolves ref and finds the index itself).
    const indexFile = cachedIndexPath(this.opts.cacheDir, image.manifest);
    const resolved = (await access(indexFile).then(() => true, () => false)) ? { indexFile, manifest: image.manifest, location: image.location } : undefined;
    try {
      const started = await startBackground({
        image: ref,
        ...(resolved ? { resolved } : {}),
        mountpoint,
        cacheDir: this.opts.cacheDir,
        ...(this.opts.remoteCache ? { remoteCache: this.opts.remoteCache } : {}),
        ...(this.opts.insecureRegistries?.length ? { insecureRegistry: this.opts.insecureRegistries } : {}),
        // As containerd's own snapshots: setuid programs and device nodes of the image work in
        // its containers. The mount is reachable only by root (ROOT is private).
        allowSuid: true,
        allowDev: true,
      });
      this.opts.metrics?.mounted(image.manifest);
      this.log.info({ image: image.image ?? ref, manifest: image.manifest, mountpoint, pid: started.pid, handedIndex: resolved !== undefined }, 'snapshotter: image mounted');
    } catch (err) {
      if (isClipError(err, 'EINVAL') && /already mounted by clip/.test((err as Error).message) && this.isMounted(image.manifest)) return mountpoint;
      throw err;
    }
    return mountpoint;
  }

  /**
   * Whether the mount is served: statfs reaches the server (never the kernel's caches) and answers.
   * A server being restarted by its holder answers once the next one has taken over, so this waits
   * for it rather than take a live mount for a dead one.
   */
  private async answers(mountpoint: string): Promise<boolean> {
    const answered = statfs(mountpoint).then(() => true, () => false);
    const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), ANSWER_MS).unref());
    return Promise.race([answered, timeout]);
  }

  /** Unmount the image unless `inUse()`, asked under the image's lock, says a snapshot still needs it. */
  release(manifest: string, inUse: () => boolean): Promise<void> {
    return this.withLock(manifest, async () => {
      if (!this.isMounted(manifest) || inUse()) return;
      const mountpoint = this.mountpoint(manifest);
      await unmountMountpoint(mountpoint, { cacheDir: this.opts.cacheDir, logger: this.log });
      // Its (now empty) directories go too; rmdir never removes anything else.
      await rmdir(mountpoint).then(() => rmdir(dirname(mountpoint))).catch(() => undefined);
      this.log.info({ manifest, mountpoint }, 'snapshotter: image unmounted');
    });
  }

  /** Manifests of every image mounted under ROOT/images. */
  mounted(): string[] {
    const prefix = join(this.opts.root, 'images') + '/';
    const out = new Set<string>();
    for (const m of parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))) {
      if (!isFuse(m) || !m.mountPoint.startsWith(prefix)) continue;
      const hex = m.mountPoint.slice(prefix.length).split('/')[0] ?? '';
      if (/^[0-9a-f]{64}$/.test(hex)) out.add(`sha256:${hex}`);
    }
    return [...out];
  }
}
