/**
 * The verified marks a LayerFile shares with the FUSE reader threads (newSharedLayerState): set only
 * for chunks verified by the file that owns the state now, reset when another file (another inode)
 * takes it over, and withdrawn when the owner closes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerFile, newSharedLayerState } from '../../src/storage/layer-file.js';
import { SHARED_STATE_HEADER, VERIFIED_SHARED } from '../../src/storage/shared-layer-state.js';
import { layerRecord, type LayerRecord } from '../../src/storage/types.js';
import { tempDir } from './helpers.js';

const CHUNK = 4096;

describe('LayerFile shared verified marks', () => {
  let root: string;
  let data: Buffer;
  let layer: LayerRecord;

  beforeAll(async () => {
    root = await tempDir();
    data = randomBytes(3 * CHUNK);
    const digests = [0, 1, 2].map((i) => createHash('sha256').update(data.subarray(i * CHUNK, (i + 1) * CHUNK)).digest());
    layer = layerRecord({
      diffId: `sha256:${createHash('sha256').update(data).digest('hex')}`, digest: `sha256:${'0'.repeat(64)}`,
      compression: 'none', compressedSize: data.length, uncompressedSize: data.length, chunkSize: CHUNK, chunkDigests: Buffer.concat(digests),
    });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const chunk = (i: number): Buffer => data.subarray(i * CHUNK, (i + 1) * CHUNK);
  const view = (sab: SharedArrayBuffer) => ({
    generation: () => Atomics.load(new Int32Array(sab, 0, 2), 0),
    ino: () => new Float64Array(sab, 8, 1)[0],
    marks: () => [...new Uint8Array(sab, SHARED_STATE_HEADER)],
  });

  it('marks what this file verified (written, or read and checked), never a chunk that failed its check', async () => {
    const file = path.join(root, 'a');
    // Another process filled chunks 1 and 2; chunk 2 rotted on disk since.
    const other = await LayerFile.open(layer, file, false);
    await other.writeChunk(1, chunk(1));
    await other.writeChunk(2, chunk(2));
    await other.close();
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from([data[2 * CHUNK + 7]! ^ 1]), 0, 1, 2 * CHUNK + 7);
    await fh.close();

    const sab = newSharedLayerState(layer);
    const s = view(sab);
    const f = await LayerFile.open(layer, file, false, sab);
    expect(s.generation()).toBeGreaterThan(0);
    expect(s.ino()).toBe((await stat(file)).ino);
    expect(s.marks()).toEqual([0, 0, 0]);
    await f.writeChunk(0, chunk(0));
    expect(await f.readVerified(1)).toEqual(chunk(1));
    expect(await f.readVerified(2)).toBeUndefined();
    expect(s.marks()).toEqual([VERIFIED_SHARED, VERIFIED_SHARED, 0]);
    await f.close();
    expect(s.generation()).toBe(0);
  });

  it('a file that takes the state over resets it; the file it replaced publishes nothing more, and its close leaves the new one', async () => {
    const file = path.join(root, 'b');
    const sab = newSharedLayerState(layer);
    const s = view(sab);
    const old = await LayerFile.open(layer, file, false, sab);
    await old.writeChunk(0, chunk(0));
    const oldGen = s.generation();
    expect(s.marks()[0]).toBe(VERIFIED_SHARED);

    await unlink(file); // evicted: the next open makes another inode
    const next = await LayerFile.open(layer, file, false, sab);
    expect(s.generation()).toBeGreaterThan(oldGen);
    expect(s.ino()).toBe((await stat(file)).ino);
    expect(s.marks()).toEqual([0, 0, 0]);
    await old.writeChunk(1, chunk(1)); // a request still in flight on the evicted file
    expect(s.marks()).toEqual([0, 0, 0]);
    const gen = s.generation();
    await old.close();
    expect(s.generation()).toBe(gen);
    await next.writeChunk(2, chunk(2));
    expect(s.marks()).toEqual([0, 0, VERIFIED_SHARED]);
    await next.close();
    expect(s.generation()).toBe(0);
  });
});
