/**
 * `clip index` against a real registry behind a fault proxy: a byte flipped in transit is a digest
 * mismatch of the blob (not the tar or inflate error it causes first), and the layer is downloaded
 * again; a blob that stays wrong fails with EDIGEST naming it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { openImage, pushLayout } from '../../src/oci/index.js';
import type { Layer } from '../../src/oci/types.js';
import { indexImage, LAYER_ATTEMPTS } from '../../src/storage/indexer.js';
import { blobGets, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { fixture } from '../support/fixtures/index.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

let registry: TestRegistry;
let proxy: FaultProxy;
let ref: string;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  const fx = await fixture('basic');
  ref = `${proxy.host}/faults/indexed:v1`;
  await pushLayout(fx.layoutDir, fx.tag, ref);
});
afterAll(async () => {
  await closeScanPool();
  await proxy?.stop();
  await registry?.stop();
});
afterEach(() => proxy.clearFaults());

const source = () => openImage(ref, { retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 } });

/** The largest gzip layer: a flip in its middle lands in deflate data. */
async function biggestLayer(): Promise<Layer> {
  const img = await source().resolve();
  return img.layers.filter((l) => l.compression === 'gzip').sort((a, b) => b.descriptor.size - a.descriptor.size)[0]!;
}

describe('indexing through a corrupting connection', () => {
  it('downloads a layer again when a flipped byte breaks its digest, and succeeds', async () => {
    const layer = await biggestLayer();
    const clean = await indexImage(source());
    const gets = proxy.count(blobGets(layer.descriptor.digest));
    proxy.inject({ kind: 'flip', offset: Math.floor(layer.descriptor.size / 2), match: blobGets(layer.descriptor.digest) });
    const { bytes } = await indexImage(source());
    expect(bytes.equals(clean.bytes)).toBe(true);
    expect(proxy.count(blobGets(layer.descriptor.digest)) - gets).toBe(2);
  });

  it('reports a blob that stays corrupt as EDIGEST naming it, not as the tar or inflate error it causes', async () => {
    const layer = await biggestLayer();
    const gets = proxy.count(blobGets(layer.descriptor.digest));
    proxy.inject({ kind: 'flip', offset: 600, match: blobGets(layer.descriptor.digest), times: 100 });
    await expect(indexImage(source())).rejects.toMatchObject({
      code: 'EDIGEST', object: layer.descriptor.digest, 
      // The registry client's own check at the end of the body, or the scan's (for stores that do not verify).
      message: expect.stringMatching(/blob content does not match its digest|downloaded blob has sha256:/),
    });
    expect(proxy.count(blobGets(layer.descriptor.digest)) - gets).toBe(LAYER_ATTEMPTS);
  });
});
