/**
 * The checkpoint windows of a version 4 index published without them (docs/index-artifact.md):
 * each is fetched on its checkpoint's first use, from the fastest tier that has it, and checked
 * against the digest the index keeps of it:
 *
 *   1. this process's memory (verified windows, per index),
 *   2. the local windows file, CACHE_DIR/windows/<blob hex>.windows: the windows blob written
 *      sparsely, window by window, as they are fetched (a hole or a torn write fails the digest,
 *      and is a miss),
 *   3. the shared cache, the value `clip:windows:<blob hex>` read by range (GETRANGE; written
 *      window by window with SETRANGE, so its gaps are zeros, a miss too),
 *   4. the windows blob itself in the image's repository, read by range.
 *
 * A window found below a tier is written into the tiers above it. A window from the repository that
 * fails its digest is ECORRUPT naming the image, the layer and the checkpoint: nothing is inflated
 * from it. One from a cache that fails is a miss there (logged), and the next tier is asked.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { ImageIndex } from '../index/reader.js';
import type { IndexCheckpoint } from '../index/types.js';
import { windowDigest } from '../index/window-digest.js';
import type { BlobStore } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { untilAborted } from '../util/abort.js';
import { silentLogger, type Logger } from '../util/log.js';
import { ensurePrivateDir } from './cache-dir.js';
import type { RedisChunkCache } from './remote-cache.js';
import { digestHex } from './types.js';

/** The tiers a fetch may use besides the repository's blob (`store`). */
export interface WindowTiers {
  store: BlobStore;
  /** The cache directory (its windows/ holds the local windows files). */
  dir?: string | undefined;
  remote?: RedisChunkCache | undefined;
  log?: Logger | undefined;
  signal: AbortSignal;
}

/** Where each window came from, for tests and benchmarks. */
export interface WindowStats {
  memory: number;
  local: number;
  remote: number;
  source: number;
  /** Windows a cache held wrong (or not at all: a hole), before a tier below gave the right one. */
  missed: number;
}

/** CACHE_DIR/windows/<blob hex>.windows */
export function windowsFilePath(dir: string, blobDigest: string): string {
  return path.join(dir, 'windows', `${digestHex(blobDigest, 'windows blob digest')}.windows`);
}

/** The shared cache's key for a windows blob: its digest. */
export function sharedWindowsKey(blobDigest: string): string {
  return `clip:windows:${blobDigest}`;
}

/** The windows of one index: fetched once per process, whichever mount asks. */
export class IndexWindows {
  private readonly kept = new Map<string, Buffer>();
  private readonly flights = new Map<string, Promise<Buffer>>();
  readonly stats: WindowStats = { memory: 0, local: 0, remote: 0, source: 0, missed: 0 };

  constructor(readonly index: ImageIndex) {}

  /** Checkpoint `i` of `layer` with its window, fetched if it is not at hand. */
  async checkpoint(layer: number, i: number, tiers: WindowTiers): Promise<IndexCheckpoint> {
    if (!this.index.needsWindow(layer, i)) return this.index.checkpoint(layer, i);
    const key = `${layer}:${i}`;
    let packed = this.kept.get(key);
    if (packed) this.stats.memory++;
    else {
      let flight = this.flights.get(key);
      if (!flight) {
        // Shared by every read that needs this window: no one reader's abort ends it, only its own deadline.
        flight = this.fetch(layer, i, { ...tiers, signal: AbortSignal.timeout(FETCH_DEADLINE_MS) }).finally(() => this.flights.delete(key));
        this.flights.set(key, flight);
      }
      packed = await untilAborted(flight, tiers.signal);
    }
    return this.index.checkpointWith(layer, i, packed);
  }

  private async fetch(layer: number, i: number, tiers: WindowTiers): Promise<Buffer> {
    const log = tiers.log ?? silentLogger;
    const blob = this.index.windowsBlob!;
    const place = this.index.windowPlace(layer, i);
    const right = (b: Buffer | null | undefined): boolean => !!b && b.length === place.length && windowDigest(b).equals(place.digest);
    const file = tiers.dir ? windowsFilePath(tiers.dir, blob.digest) : undefined;
    const got = (b: Buffer, tier: 'local' | 'remote' | 'source'): Buffer => {
      this.stats[tier]++;
      this.kept.set(`${layer}:${i}`, b);
      return b;
    };
    const missed = (tier: string, b: Buffer | null | undefined): void => {
      this.stats.missed++;
      log.debug({ tier, layer: this.index.layers[layer]!.digest, checkpoint: i, got: b?.length }, 'checkpoint window not there (or wrong): next tier');
    };
    if (file) {
      const b = await readAt(file, place.offset, place.length);
      if (b && right(b)) return got(b, 'local');
      if (b && b.some((x) => x !== 0)) missed('local', b);
    }
    // The local write is a page-cache write, waited for (the next mount finds it); the shared
    // cache's is sent now and not waited for (a slow cache must not slow the read).
    const fill = async (b: Buffer, remote: boolean): Promise<void> => {
      if (remote && tiers.remote) void tiers.remote.storeRange(sharedWindowsKey(blob.digest), place.offset, b);
      if (file) await writeAt(file, place.offset, b).catch((err: unknown) => log.warn({ file, err: (err as Error).message }, 'cannot keep a checkpoint window'));
    };
    if (tiers.remote) {
      const b = await tiers.remote.fetchRange(sharedWindowsKey(blob.digest), place.offset, place.offset + place.length);
      if (b && right(b)) {
        await fill(b, false);
        return got(b, 'remote');
      }
      if (b?.length) missed('remote', b);
    }
    const b = await readRange(tiers.store, blob, place.offset, place.length, tiers.signal);
    if (!right(b)) {
      throw new ClipError('ECORRUPT', `checkpoint ${i} window of layer ${this.index.layers[layer]!.digest} from the windows blob ${blob.digest} `
        + `(${b.length} bytes at ${place.offset}) does not match its digest`, { object: this.index.image.reference });
    }
    await fill(b, true);
    return got(b, 'source');
  }
}

/** A window's fetch (a few KB) that takes longer than this has failed. */
const FETCH_DEADLINE_MS = 30_000;

const perIndex = new WeakMap<ImageIndex, IndexWindows>();

/** The one IndexWindows of an index in this process. */
export function indexWindows(index: ImageIndex): IndexWindows {
  let w = perIndex.get(index);
  if (!w) perIndex.set(index, (w = new IndexWindows(index)));
  return w;
}

/** `length` bytes at `offset` of a local file, or undefined (no file; shorter than that). */
async function readAt(file: string, offset: number, length: number): Promise<Buffer | undefined> {
  const fh = await open(file, constants.O_RDONLY).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return bytesRead === length ? b : undefined;
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Write a window in place in the sparse windows file (made on first use). */
async function writeAt(file: string, offset: number, data: Buffer): Promise<void> {
  await ensurePrivateDir(path.dirname(path.dirname(file)));
  await ensurePrivateDir(path.dirname(file));
  const fh = await open(file, constants.O_WRONLY | constants.O_CREAT, 0o600);
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

/** Bytes [offset, offset + length) of the windows blob from the repository (fewer if it ends first). */
async function readRange(store: BlobStore, blob: { digest: string; size: number }, offset: number, length: number, signal: AbortSignal): Promise<Buffer> {
  const body = await store.openBlobRange(blob, offset, Math.min(offset + length, blob.size), { signal });
  const parts: Buffer[] = [];
  try {
    for await (const piece of body) parts.push(piece as Buffer);
  } finally {
    body.destroy();
  }
  return Buffer.concat(parts);
}
