/**
 * The snapshotter's Prometheus metrics (`clip snapshotter --metrics ADDR`), per image: what the
 * snapshotter did for it (layers served lazily, layers left to containerd, image mounts, errors)
 * and what its mount did (bytes per tier, reads, tier requests and errors), the latter asked of the
 * node's clip server at each scrape. Every image series is labelled with the image reference as
 * containerd named it, the manifest digest and the digest of the clip index the mount serves.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { serveMetrics } from '../mount/metrics-server.js';
import type { MountStatus } from '../mount/status.js';
import { askServer } from '../server/client.js';
import { cachedIndexPath } from '../storage/indexer.js';
import type { Logger } from '../util/log.js';

const IMAGE_LABELS = ['image', 'manifest', 'index'] as const;
type ImageLabel = (typeof IMAGE_LABELS)[number];
type ImageLabels = Record<ImageLabel, string>;

/** The storage counters (Metrics.snapshot() names) exported per tier, and the series they become. */
const PER_TIER: [prefix: string, name: string, help: string][] = [
  ['bytes', 'clip_image_fetched_bytes', 'Bytes the image mount obtained from each tier since it was mounted'],
  ['requests', 'clip_image_tier_requests', 'Requests the image mount made to each tier since it was mounted'],
  ['errors', 'clip_image_tier_errors', 'Failed calls to each tier since the image was mounted'],
  ['verifyFailures', 'clip_image_verify_failures', 'Chunks from each tier that failed verification since the image was mounted'],
];
const TIERS = ['disk', 'remote', 'source'] as const;

/** How long one status answer serves the gauges of a scrape. */
const STATUS_TTL_MS = 500;

export class SnapshotterMetrics {
  readonly registry = new Registry();
  /** Per manifest: the reference containerd asked for, and the index digest once known. */
  private readonly images = new Map<string, { image: string; index?: Promise<string> }>();
  private readonly remoteLayers: Counter<ImageLabel>;
  private readonly unpacked: Counter<'image' | 'reason'>;
  private readonly mounts: Counter<ImageLabel>;
  private readonly imageErrors: Counter<ImageLabel | 'op'>;
  private readonly requests: Counter<'method' | 'code'>;
  private status: { at: number; mounts: Promise<MountStatus[]> } | undefined;

  constructor(private readonly root: string, private readonly cacheDir: string, private readonly log: Logger) {
    const registers = [this.registry];
    this.remoteLayers = new Counter({ name: 'clip_snapshotter_remote_layers_total', help: 'Layers served lazily (containerd downloads nothing for them)', labelNames: IMAGE_LABELS, registers });
    this.unpacked = new Counter({ name: 'clip_snapshotter_unpacked_layers_total', help: 'Layers left to containerd to download and unpack, by reason', labelNames: ['image', 'reason'], registers });
    this.mounts = new Counter({ name: 'clip_snapshotter_image_mounts_total', help: 'Image mounts made', labelNames: IMAGE_LABELS, registers });
    this.imageErrors = new Counter({ name: 'clip_snapshotter_image_errors_total', help: 'Failures about an image, by operation', labelNames: [...IMAGE_LABELS, 'op'], registers });
    this.requests = new Counter({ name: 'clip_snapshotter_requests_total', help: 'Snapshots API calls by method and result', labelNames: ['method', 'code'], registers });
    // collect() runs with the gauge as `this`; the arrow keeps the snapshotter's.
    const served = (): ReturnType<SnapshotterMetrics['served']> => this.served();
    new Gauge({
      name: 'clip_image_mounted', help: '1 for each image the snapshotter has mounted', labelNames: IMAGE_LABELS, registers,
      async collect() {
        this.reset();
        for (const { labels } of await served()) this.set(labels, 1);
      },
    });
    new Gauge({
      name: 'clip_image_reads', help: 'FUSE reads the image mount answered since it was mounted', labelNames: IMAGE_LABELS, registers,
      async collect() {
        this.reset();
        for (const { labels, status } of await served()) this.set(labels, status.reads ?? 0);
      },
    });
    for (const [prefix, name, help] of PER_TIER) {
      new Gauge({
        name, help, labelNames: [...IMAGE_LABELS, 'tier'], registers,
        async collect() {
          this.reset();
          for (const { labels, status } of await served()) {
            for (const tier of TIERS) {
              const v = prefix === 'bytes' ? status.bytes[tier] : status.counters?.[`${prefix}.${tier}`];
              this.set({ ...labels, tier }, v ?? 0);
            }
          }
        },
      });
    }
  }

  /** Listen on "[host:]port". */
  serve(addr: string): Promise<Server> {
    return serveMetrics(addr, this.registry);
  }

  /** containerd asked for `image` (its reference) and it resolved to `manifest`. */
  named(manifest: string, image: string): void {
    const cur = this.images.get(manifest);
    if (!cur) this.images.set(manifest, { image });
    else cur.image = image;
  }

  remoteLayer(manifest: string): void {
    void this.labels(manifest).then((l) => this.remoteLayers.inc(l));
  }

  unpackedLayer(image: string, reason: 'no-index' | 'unresolved' | 'moved'): void {
    this.unpacked.inc({ image, reason });
  }

  mounted(manifest: string): void {
    void this.labels(manifest).then((l) => this.mounts.inc(l));
  }

  imageError(manifest: string, op: string): void {
    void this.labels(manifest).then((l) => this.imageErrors.inc({ ...l, op }));
  }

  request(method: string, code: string): void {
    this.requests.inc({ method, code });
  }

  /** The labels of an image: its reference (or the manifest's location@digest after a restart), manifest, index digest. */
  async labels(manifest: string, fallbackImage = manifest): Promise<ImageLabels> {
    let cur = this.images.get(manifest);
    if (!cur) {
      cur = { image: fallbackImage };
      this.images.set(manifest, cur);
    }
    cur.index ??= fileDigest(cachedIndexPath(this.cacheDir, manifest)).catch(() => {
      cur.index = undefined; // not cached yet: asked again next time
      return '';
    });
    return { image: cur.image, manifest, index: await cur.index };
  }

  /** The image mounts under ROOT/images that the node's server serves, with their labels. */
  private async served(): Promise<{ labels: ImageLabels; status: MountStatus }[]> {
    if (!this.status || Date.now() - this.status.at > STATUS_TTL_MS) {
      const mounts = askServer(this.cacheDir, { op: 'status' }).then(
        (r) => (r?.ok && r.op === 'status' ? r.mounts : []),
        (err: unknown) => {
          this.log.warn({ err: (err as Error).message }, 'snapshotter: metrics: the clip server did not answer');
          return [];
        },
      );
      this.status = { at: Date.now(), mounts };
    }
    const prefix = join(this.root, 'images') + '/';
    const out: { labels: ImageLabels; status: MountStatus }[] = [];
    for (const status of await this.status.mounts) {
      if (!status.mountpoint.startsWith(prefix)) continue;
      out.push({ labels: await this.labels(status.manifest, status.image), status });
    }
    return out;
  }
}

async function fileDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}
