/**
 * The read path counts into plain numbers; a prom-client registry built later shows every count
 * made before it existed and follows those made after, histogram buckets included.
 */
import { describe, expect, it } from 'vitest';
import { StorageMetrics } from '../../src/storage/metrics.js';

function sample(text: string, line: string): number {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  if (!found) throw new Error(`no sample ${line} in:\n${text}`);
  return Number(found.slice(found.lastIndexOf(' ') + 1));
}

describe('plain storage counts', () => {
  it('carries counts made before prom-client loaded into its registry, and follows later ones', async () => {
    const m = new StorageMetrics();
    const disk = m.bytes.labels({ tier: 'disk' });
    disk.inc(1000);
    m.bytes.inc({ tier: 'source' }, 4096);
    m.singleflightJoins.inc();
    m.breakerOpen.set(1);
    m.publish.inc({ result: 'stored' });
    m.fetchSeconds.observe({ tier: 'remote' }, 0.003);
    m.fetchSeconds.observe({ tier: 'remote' }, 0.2);
    m.fetchSeconds.observe({ tier: 'remote' }, 30);
    expect(await m.snapshot()).toMatchObject({ 'bytes.disk': 1000, 'bytes.source': 4096, 'bytes.remote': 0, singleflightJoins: 1, breakerOpen: 1, 'publish.stored': 1 });

    const registry = await m.registry();
    expect(await m.registry()).toBe(registry);
    let text = await registry.metrics();
    expect(sample(text, 'clip_storage_bytes_total{tier="disk"}')).toBe(1000);
    expect(sample(text, 'clip_storage_bytes_total{tier="source"}')).toBe(4096);
    expect(sample(text, 'clip_storage_singleflight_joins_total')).toBe(1);
    expect(sample(text, 'clip_storage_remote_breaker_open')).toBe(1);
    expect(sample(text, 'clip_storage_publish_total{result="stored"}')).toBe(1);
    expect(text).toContain('# TYPE clip_storage_fetch_seconds histogram');
    expect(sample(text, 'clip_storage_fetch_seconds_bucket{le="0.001",tier="remote"}')).toBe(0);
    expect(sample(text, 'clip_storage_fetch_seconds_bucket{le="0.005",tier="remote"}')).toBe(1);
    expect(sample(text, 'clip_storage_fetch_seconds_bucket{le="0.25",tier="remote"}')).toBe(2);
    expect(sample(text, 'clip_storage_fetch_seconds_bucket{le="10",tier="remote"}')).toBe(2);
    expect(sample(text, 'clip_storage_fetch_seconds_bucket{le="+Inf",tier="remote"}')).toBe(3);
    expect(sample(text, 'clip_storage_fetch_seconds_count{tier="remote"}')).toBe(3);
    expect(sample(text, 'clip_storage_fetch_seconds_sum{tier="remote"}')).toBeCloseTo(30.203, 6);

    disk.inc(24);
    m.breakerOpen.set(0);
    m.fetchSeconds.labels({ tier: 'disk' }).startTimer()();
    text = await registry.metrics();
    expect(sample(text, 'clip_storage_bytes_total{tier="disk"}')).toBe(1024);
    expect(sample(text, 'clip_storage_remote_breaker_open')).toBe(0);
    expect(sample(text, 'clip_storage_fetch_seconds_count{tier="disk"}')).toBe(1);
    const json = await registry.getMetricsAsJSON();
    expect(json.find((j) => j.name === 'clip_storage_fetch_seconds')?.values.length).toBeGreaterThan(0);
  });

  it('adds metrics registered by others, before and after the registry is built', async () => {
    const m = new StorageMetrics();
    m.add((prom, registry) => new prom.Gauge({ name: 'early_gauge', help: 'h', registers: [registry] }).set(7));
    const registry = await m.registry();
    m.add((prom, r) => new prom.Gauge({ name: 'late_gauge', help: 'h', registers: [r] }).set(8));
    const text = await registry.metrics();
    expect(sample(text, 'early_gauge')).toBe(7);
    expect(sample(text, 'late_gauge')).toBe(8);
  });
});
