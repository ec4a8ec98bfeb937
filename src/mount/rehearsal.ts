/**
 * A kept server's rehearsal of a profiled cold start's read path (issue 12). A fresh process
 * compiles each JS function on its first call: a cold mount of a new image pays ~0.1–0.2 s of
 * that on the event loop (inflating, learning checkpoints, verifying, writing chunks, encoding and
 * decoding a profile, the prefetch) while python waits, where a warm mount runs none of it.
 * A server kept waiting for mounts (`clip server start`) runs that code once on a small gzip layer
 * made here, before the first mount asks for it: the same functions, with no network, in a
 * throwaway cache directory removed after. Nothing it makes reaches a mount.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { LayerScan } from '../archive/types.js';
import type { BlobStore } from '../oci/types.js';
import { decodeProfile, encodeProfile, type ProfileRange, type StartupProfile } from '../profile/format.js';
import { planPrefetch, prefetch } from '../profile/prefetch.js';
import { CheckpointSource, layerFromScan, openStorage, type ResumableLayer } from '../storage/index.js';

const CHUNK = 64 * 1024;
const LAYER_BYTES = 8 * CHUNK;
/** gzip(1)'s and zlib's header without a file name: the deflate stream starts at byte 10. */
const GZIP_HEADER_BYTES = 10;
/** Reads in the middle of the layer, as a program's reads of files lie in a layer. */
const READS: readonly [number, number][] = [[CHUNK + 1000, 6000], [3 * CHUNK + 40_000, 30_000], [6 * CHUNK + 5, 70_000]];

export interface RehearsalResult {
  /** Bytes the demand reads returned, in both passes; each pass checked against the layer. */
  bytesRead: number;
  /** Learned checkpoints the first pass handed to the second through the profile. */
  learned: number;
  /** Bytes the second pass's prefetch made ready. */
  prefetched: number;
}

/** Text-like bytes (a few thousand words from a seeded generator): inflating them takes real work. */
function layerContent(): Buffer {
  const words = ['import', 'json', 'def', 'return', 'self', 'class', 'None', 'for', 'in', 'if', 'else', 'value', 'encoder', 'decoder', 'lib', 'python3'];
  const out = Buffer.alloc(LAYER_BYTES);
  let seed = 0x2545f491;
  let at = 0;
  while (at < out.length) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    at += out.write(`${words[(seed >>> 8) % words.length]}${(seed >>> 20) % 7 === 0 ? '\n' : ' '}`, at);
  }
  return out;
}

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** The layer and what an index would say of it: one checkpoint, at its start. */
async function makeLayer(): Promise<{ layer: ResumableLayer; gz: Buffer; content: Buffer }> {
  const content = layerContent();
  const gz = await promisify(gzip)(content);
  const chunkDigests = Buffer.concat(Array.from({ length: LAYER_BYTES / CHUNK }, (_, i) => sha256(content.subarray(i * CHUNK, (i + 1) * CHUNK))));
  const scan: LayerScan = {
    compression: 'gzip', compressedSize: gz.length, uncompressedSize: content.length,
    digest: `sha256:${sha256(gz).toString('hex')}`, diffId: `sha256:${sha256(content).toString('hex')}`,
    entries: [], checkpoints: [{ out: 0, in: GZIP_HEADER_BYTES, bits: 0, window: Buffer.alloc(0) }],
    chunkSize: CHUNK, chunkDigests,
  };
  return { layer: layerFromScan(scan), gz, content };
}

/** The layer's blob, served by range from memory (what the registry serves over HTTP). */
function memoryStore(gz: Buffer): BlobStore {
  return {
    location: 'rehearsal:memory',
    openBlob: async () => Readable.from([gz]),
    openBlobRange: async (_desc, start, end) => Readable.from([gz.subarray(start, end)]),
  };
}

/** One store on a cache directory of its own, as a mount opens it. */
async function withStore<T>(dir: string, gz: Buffer, use: (s: Awaited<ReturnType<typeof openStorage>>) => Promise<T>): Promise<T> {
  const storage = await openStorage({ source: new CheckpointSource(memoryStore(gz)), cacheDir: dir, shareLayers: true, statsIntervalMs: 0 });
  try {
    return await use(storage);
  } finally {
    await storage.close();
  }
}

/**
 * Run a profiled cold start's read path twice on a small layer: a first node's (demand reads from
 * the source, checkpoints learned, a profile encoded) and the next node's (the profile decoded,
 * its learned checkpoints handed over, the prefetch, demand reads). Every byte read is compared
 * with the layer's; a mismatch throws (the read path is broken, which the first mount would meet).
 */
export async function rehearseColdStart(): Promise<RehearsalResult> {
  const { layer, gz, content } = await makeLayer();
  const dir = await mkdtemp(path.join(tmpdir(), 'clip-rehearsal-'));
  let bytesRead = 0;
  const readAll = async (s: { read: (l: ResumableLayer, o: number, n: number) => Promise<Buffer> }): Promise<void> => {
    for (const [offset, length] of READS) {
      const got = await s.read(layer, offset, length);
      if (!got.equals(content.subarray(offset, offset + length))) throw new Error(`rehearsal: read ${offset}+${length} returned other bytes`);
      bytesRead += got.length;
    }
  };
  try {
    const ranges: ProfileRange[] = READS.map(([offset, length], i) => ({ layer: 0, offset, length, atMs: i, ino: 0 }));
    const recorded = await withStore(path.join(dir, 'first'), gz, async (s) => {
      await readAll(s);
      const profile: StartupProfile = { manifestDigest: layer.digest, indexDigest: layer.digest, layers: [layer.diffId], ranges, learned: new Map([[0, s.learnedCheckpoints(layer)]]) };
      return encodeProfile(profile);
    });
    const profile = decodeProfile(recorded, 'the rehearsal profile');
    const learned = profile.learned.get(0) ?? [];
    const prefetched = await withStore(path.join(dir, 'next'), gz, async (s) => {
      s.addLearnedCheckpoints(layer, learned);
      const done = await prefetch(s, planPrefetch(profile.ranges, [layer]), { concurrency: 2 });
      if (done.failed > 0) throw new Error(`rehearsal: ${done.failed} of ${done.pieces} prefetch pieces failed`);
      await readAll(s);
      await s.packLearned();
      return done.bytes;
    });
    return { bytesRead, learned: learned.length, prefetched };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
