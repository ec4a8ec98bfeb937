/**
 * Storage metrics of one store (never prom-client's global registry), so several stores in one
 * process, or in tests, do not collide. They are plain numbers (src/storage/counts.ts): a server
 * loads prom-client only when a registry is asked for (`registry()`: a metrics endpoint), which
 * then reads them at each scrape. `snapshot()` gives them for `cache stats` and `clip mounts`.
 */
import type { Registry } from 'prom-client';
import { PlainCounter, PlainGauge, PlainHistogram, type PromClient } from './counts.js';

export type Tier = 'disk' | 'remote' | 'source';
const TIERS: Tier[] = ['disk', 'remote', 'source'];

/** Adds more metrics (the process's, a mount's) to a registry when it is built. */
export type RegistryAddition = (prom: PromClient, registry: Registry) => void;

export class StorageMetrics {
  readonly bytes = new PlainCounter('clip_storage_bytes_total', 'Bytes obtained per tier', 'tier');
  readonly requests = new PlainCounter('clip_storage_requests_total', 'Requests made to each tier', 'tier');
  readonly hits = new PlainCounter('clip_storage_chunk_hits_total', 'Chunks found in a tier', 'tier');
  readonly misses = new PlainCounter('clip_storage_chunk_misses_total', 'Chunks a tier did not have', 'tier');
  readonly verifyFailures = new PlainCounter('clip_storage_verify_failures_total', 'Chunks whose sha256 did not match the index, per tier', 'tier');
  readonly errors = new PlainCounter('clip_storage_errors_total', 'Failed calls per tier', 'tier');
  readonly fetchSeconds = new PlainHistogram('clip_storage_fetch_seconds', 'Latency of one fetch from a tier (disk: one read in 16 is timed)', 'tier',
    [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  readonly singleflightJoins = new PlainCounter('clip_storage_singleflight_joins_total', 'Chunk reads that waited on a fetch already in flight');
  readonly evictions = new PlainCounter('clip_storage_evictions_total', 'Layers evicted from the disk cache');
  readonly evictedBytes = new PlainCounter('clip_storage_evicted_bytes_total', 'Bytes freed by eviction');
  readonly breakerOpen = new PlainGauge('clip_storage_remote_breaker_open', '1 while the remote cache is skipped');
  readonly publish = new PlainCounter('clip_storage_publish_total', 'Chunks offered to the remote cache, by outcome', 'result');
  readonly publishQueueBytes = new PlainGauge('clip_storage_publish_queue_bytes', 'Bytes waiting to be published');
  readonly indexAuditFailures = new PlainCounter('clip_index_audit_failures_total', 'Layers, fetched whole, that their index did not describe truly (the index is condemned)');

  private readonly additions: RegistryAddition[] = [];
  private built: Promise<Registry> | undefined;
  /** Set once the registry is built: later additions go in at once. */
  private loaded: { prom: PromClient; registry: Registry } | undefined;

  constructor() {
    for (const tier of TIERS) {
      for (const c of [this.bytes, this.requests, this.hits, this.misses, this.verifyFailures, this.errors]) c.inc({ tier }, 0);
    }
    for (const c of [this.singleflightJoins, this.evictions, this.evictedBytes, this.indexAuditFailures]) c.inc(0);
  }

  /** Metrics of others to show with these once a registry is built (now, if it is). */
  add(addition: RegistryAddition): void {
    this.additions.push(addition);
    if (this.loaded) addition(this.loaded.prom, this.loaded.registry);
  }

  /** A prom-client registry with these metrics (prom-client loads on the first call). */
  registry(): Promise<Registry> {
    this.built ??= import('prom-client').then((prom) => {
      const registry = new prom.Registry();
      for (const m of [this.bytes, this.requests, this.hits, this.misses, this.verifyFailures, this.errors, this.fetchSeconds,
        this.singleflightJoins, this.evictions, this.evictedBytes, this.breakerOpen, this.publish, this.publishQueueBytes, this.indexAuditFailures]) {
        m.register(prom, registry);
      }
      for (const a of this.additions) a(prom, registry);
      this.loaded = { prom, registry };
      return registry;
    });
    return this.built;
  }

  /** Current values as plain numbers: { "bytes.disk": 123, "hits.remote": 4, "singleflightJoins": 2, ... }. */
  async snapshot(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const named: [string, PlainCounter<string> | PlainGauge][] = [
      ['bytes', this.bytes],
      ['requests', this.requests],
      ['hits', this.hits],
      ['misses', this.misses],
      ['verifyFailures', this.verifyFailures],
      ['errors', this.errors],
      ['singleflightJoins', this.singleflightJoins],
      ['evictions', this.evictions],
      ['evictedBytes', this.evictedBytes],
      ['breakerOpen', this.breakerOpen],
      ['publish', this.publish],
      ['indexAuditFailures', this.indexAuditFailures],
    ];
    for (const [name, metric] of named) {
      for (const v of metric.get().values) {
        const label = Object.values(v.labels as Record<string, string>)[0];
        out[label === undefined ? name : `${name}.${label}`] = v.value;
      }
    }
    return out;
  }
}
