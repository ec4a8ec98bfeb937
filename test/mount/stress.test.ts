/**
 * 32 parallel readers doing random reads against a cold mount (the image in a real registry, an
 * empty cache directory; page cache dropped now and then), served by a `clip mount --background` daemon: every byte compared with
 * `umoci unpack` of the same image, no read may hang, and the mount must unmount cleanly after.
 * CLIP_STRESS_SECONDS sets the duration: the full minute in CI, 20 s by default elsewhere.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inCI, skipUnlessRoot } from '../support/env.js';
import { fixture, pushFixture } from '../support/fixtures/index.js';
import { freePort, startRegistry, type TestRegistry } from '../support/registry.js';
import { umociUnpack } from '../support/tools.js';
import { run } from '../fuse/tools.js';
import { READERS_PY } from '../support/readers.js';
import { clip, fuseMounted } from './helpers.js';

const SECONDS = Number(process.env.CLIP_STRESS_SECONDS ?? (inCI ? 60 : 20));
const READERS = 32;

describe.skipIf(skipUnlessRoot())('stress: parallel random reads on a cold mount', () => {
  let registry: TestRegistry;
  let work: string;

  beforeAll(async () => {
    registry = await startRegistry();
    work = await mkdtemp(join(tmpdir(), 'clip-stress-'));
  }, 120_000);
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it(`${READERS} readers for ${SECONDS} s: every byte right, no hang, clean unmount`, async () => {
    const ref = await pushFixture('big', registry.host);
    const fx = await fixture('big');
    const oracle = await umociUnpack(fx.layoutDir, fx.oracleTag!, join(work, 'unpack'));
    const mnt = await mkdtemp(join(work, 'mnt-'));
    const cache = join(work, 'cache');
    const metricsPort = await freePort();
    const up = await clip(['mount', ref, mnt, '--cache-dir', cache, '--background', '--read-timeout', '60s', '--metrics-addr', `127.0.0.1:${metricsPort}`]);
    expect(up.code, up.stderr).toBe(0);
    try {
      // A hang shows up as this child outliving its time, which run() turns into a failure.
      const r = await run('python3', ['-c', READERS_PY, mnt, oracle, String(SECONDS), String(READERS)], { timeoutMs: (SECONDS + 60) * 1000 });
      expect(r.stderr).toBe('');
      const stats = JSON.parse(r.stdout) as { reads: number; bytes: number; mismatches: string[]; errors: string[]; slowest: number };
      expect(stats.errors).toEqual([]);
      expect(stats.mismatches).toEqual([]);
      expect(stats.reads).toBeGreaterThan(READERS);
      // The daemon's own account: bytes came from the registry and from disk, none failed verification.
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const value = (name: string, tier: string): number => Number(new RegExp(`^${name}\\{tier="${tier}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
      expect(value('clip_storage_bytes_total', 'source')).toBeGreaterThan(0);
      expect(value('clip_storage_bytes_total', 'disk')).toBeGreaterThan(0);
      expect(['disk', 'source'].map((t) => value('clip_storage_verify_failures_total', t))).toEqual([0, 0]);
      console.log(`stress: ${stats.reads} reads, ${(stats.bytes / 1e6).toFixed(0)} MB in ${SECONDS} s, slowest read ${stats.slowest.toFixed(2)} s`);
    } finally {
      const down = await clip(['unmount', mnt, '--cache-dir', cache]);
      expect(down.stdout).toContain('unmounted (clip server pid');
    }
    expect(fuseMounted(mnt)).toBe(false);
  }, (SECONDS + 240) * 1000);
});
