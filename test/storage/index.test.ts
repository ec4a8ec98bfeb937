import { readFile, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheGc, cacheStats, FileLayerSource, openStorage } from '../../src/storage/index.js';
import { makeTarLayer, tempDir, type TestLayer } from './helpers.js';

describe('openStorage and the cache commands', () => {
  let root: string;
  let layer: TestLayer;

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 3, bytesEach: 100_000, chunkSize: 32 * 1024 });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads through a configured store, then reports and collects the cache directory', async () => {
    const cacheDir = `${root}/cache`;
    const storage = await openStorage({ cacheDir, source: new FileLayerSource({ [layer.record.diffId]: layer.file }) });
    const bytes = await readFile(layer.file);
    expect((await storage.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
    await storage.close({ flushMs: 100 });

    const stats = await cacheStats(cacheDir);
    expect(stats).toMatchObject({ dir: cacheDir, layers: 1 });
    expect(stats.bytes).toBeGreaterThanOrEqual(bytes.length);
    expect(await cacheGc(0, cacheDir)).toMatchObject({ evicted: 1, remainingBytes: 0 });
    expect(await cacheStats(cacheDir)).toMatchObject({ layers: 0, bytes: 0 });
  });

  it('refuses a malformed remote cache URL before touching anything', async () => {
    await expect(openStorage({ cacheDir: `${root}/cache2`, remoteCache: 'memcached://x', source: new FileLayerSource({}) })).rejects.toMatchObject({
      code: 'EINVAL',
    });
  });
});
