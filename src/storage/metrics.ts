/**
 * Storage metrics in a registry of their own (never prom-client's global one), so several stores
 * in one process, or in tests, do not collide. `snapshot()` gives plain numbers for `cache stats`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type Tier = 'disk' | 'remote' | 'source';
const TIERS: Tier[] = ['disk', 'remote', 'source'];

export class StorageMetrics {
  readonly registry: Registry;
  readonly bytes: Counter<'tier'>;
  readonly requests: Counter<'tier'>;
  readonly hits: Counter<'tier'>;
  readonly misses: Counter<'tier'>;
  readonly verifyFailures: Counter<'tier'>;
  readonly errors: Counter<'tier'>;
  readonly fetchSeconds: Histogram<'tier'>;
  readonly singleflightJoins: Counter;
  readonly evictions: Counter;
  readonly evictedBytes: Counter;
  readonly breakerOpen: Gauge;
  readonly publish: Counter<'result'>;
  readonly publishQueueBytes: Gauge;
  readonly indexAuditFailures: Counter;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.bytes = new Counter({ name: 'clip_storage_bytes_total', help: 'Bytes obtained per tier', labelNames: ['tier'], registers });
    this.requests = new Counter({ name: 'clip_storage_requests_total', help: 'Requests made to each tier', labelNames: ['tier'], registers });
    this.hits = new Counter({ name: 'clip_storage_chunk_hits_total', help: 'Chunks found in a tier', labelNames: ['tier'], registers });
    this.misses = new Counter({ name: 'clip_storage_chunk_misses_total', help: 'Chunks a tier did not have', labelNames: ['tier'], registers });
    this.verifyFailures = new Counter({
      name: 'clip_storage_verify_failures_total',
      help: 'Chunks whose sha256 did not match the index, per tier',
      labelNames: ['tier'],
      registers,
    });
    this.errors = new Counter({ name: 'clip_storage_errors_total', help: 'Failed calls per tier', labelNames: ['tier'], registers });
    this.fetchSeconds = new Histogram({
      name: 'clip_storage_fetch_seconds',
      help: 'Latency of one fetch from a tier (disk: one read in 16 is timed)',
      labelNames: ['tier'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.singleflightJoins = new Counter({
      name: 'clip_storage_singleflight_joins_total',
      help: 'Chunk reads that waited on a fetch already in flight',
      registers,
    });
    this.evictions = new Counter({ name: 'clip_storage_evictions_total', help: 'Layers evicted from the disk cache', registers });
    this.evictedBytes = new Counter({ name: 'clip_storage_evicted_bytes_total', help: 'Bytes freed by eviction', registers });
    this.breakerOpen = new Gauge({ name: 'clip_storage_remote_breaker_open', help: '1 while the remote cache is skipped', registers });
    this.publish = new Counter({
      name: 'clip_storage_publish_total',
      help: 'Chunks offered to the remote cache, by outcome',
      labelNames: ['result'],
      registers,
    });
    this.publishQueueBytes = new Gauge({ name: 'clip_storage_publish_queue_bytes', help: 'Bytes waiting to be published', registers });
    this.indexAuditFailures = new Counter({
      name: 'clip_index_audit_failures_total',
      help: 'Layers, fetched whole, that their index did not describe truly (the index is condemned)',
      registers,
    });
    for (const tier of TIERS) {
      for (const c of [this.bytes, this.requests, this.hits, this.misses, this.verifyFailures, this.errors]) c.inc({ tier }, 0);
    }
  }

  /** Current values as plain numbers: { "bytes.disk": 123, "hits.remote": 4, "singleflightJoins": 2, ... }. */
  async snapshot(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const named: [string, Counter<string> | Gauge<string>][] = [
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
      const { values } = await metric.get();
      for (const v of values) {
        const label = Object.values(v.labels)[0];
        out[label === undefined ? name : `${name}.${label}`] = v.value;
      }
    }
    return out;
  }
}
