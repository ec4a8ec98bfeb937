/**
 * A synthetic image of about `count` entries shaped like a distribution image: nested directories
 * with 5-40 children, package-like file names, some symlinks, hardlinks and capabilities, three
 * layers where the upper two override, delete and add.
 */
import { createHash } from 'node:crypto';
import type { LayerScan, TarEntry } from '../../src/archive/types.js';
import type { ImageMeta } from '../../src/index/types.js';

/** Deterministic PRNG (mulberry32): the same image on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STEMS = ['lib', 'python', 'locale', 'share', 'util', 'config', 'module', 'test', 'doc', 'include', 'x86_64', 'linux', 'gnu', 'core', 'data'];
const EXTS = ['.py', '.so', '.h', '.txt', '.json', '.pyc', '.mo', '.gz', '', '.conf', '.html', '.1.gz'];

function base(): TarEntry {
  return {
    path: '', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', size: 0,
    mtimeSec: 1_700_000_000, mtimeNsec: 0, linkTarget: '', devMajor: 0, devMinor: 0, xattrs: new Map(),
    headerOffset: 0, dataOffset: 0,
  };
}

export function syntheticLayers(count: number, seed = 1): { scans: LayerScan[]; meta: ImageMeta; paths: string[] } {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const name = (): string => `${pick(STEMS)}${rand() < 0.5 ? '-' + Math.floor(rand() * 1000) : ''}${rand() < 0.3 ? '_' + pick(STEMS) : ''}${pick(EXTS)}`;
  const dirs: string[] = [''];
  const files: string[] = [];
  const layers: TarEntry[][] = [[], [], []];
  let offset = 0;
  const add = (layer: number, e: Partial<TarEntry> & { path: string }): void => {
    const entry = { ...base(), ...e, headerOffset: offset, dataOffset: offset + 512 };
    offset += 512 + Math.ceil(entry.size / 512) * 512;
    layers[layer]!.push(entry);
  };
  const seen = new Set<string>();
  while (seen.size < count) {
    const layer = rand() < 0.8 ? 0 : rand() < 0.5 ? 1 : 2;
    const parent = dirs[Math.floor(Math.pow(rand(), 2) * dirs.length)]!;
    const path = parent === '' ? name() : `${parent}/${name()}`;
    if (seen.has(path)) continue;
    seen.add(path);
    const r = rand();
    if (r < 0.1) {
      dirs.push(path);
      add(layer, { path, type: 'dir', mode: 0o755 });
    } else if (r < 0.14 && files.length > 0) {
      add(layer, { path, type: 'symlink', mode: 0o777, linkTarget: `../${pick(files)}` });
    } else if (r < 0.15 && files.length > 0 && layer === 0) {
      add(layer, { path, type: 'hardlink', linkTarget: pick(files) });
    } else {
      const size = Math.floor(Math.exp(rand() * 14));
      const xattrs = rand() < 0.002 ? new Map([['security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex')]]) : new Map<string, Buffer>();
      add(layer, { path, size, xattrs, mtimeNsec: Math.floor(rand() * 1e9) });
      if (layer === 0) files.push(path);
    }
  }
  // The upper layers also replace and delete some lower files.
  for (let i = 0; i < count / 200; i++) {
    const f = pick(files);
    const slash = f.lastIndexOf('/');
    if (rand() < 0.5) add(1, { path: f, size: 100 });
    else add(2, { path: `${f.slice(0, slash + 1)}.wh.${f.slice(slash + 1)}` });
  }
  const scans: LayerScan[] = layers.map((entries, i) => {
    const uncompressedSize = offset;
    const chunkSize = 1 << 20;
    const chunks = Math.ceil(uncompressedSize / chunkSize);
    return {
      compression: 'gzip', compressedSize: Math.floor(uncompressedSize / 3), uncompressedSize,
      digest: `sha256:${createHash('sha256').update(`b${i}`).digest('hex')}`,
      diffId: `sha256:${createHash('sha256').update(`t${i}`).digest('hex')}`,
      entries, checkpoints: [{ out: 0, in: 10, bits: 0, window: Buffer.alloc(0) }],
      chunkSize, chunkDigests: Buffer.alloc(chunks * 32, i),
    };
  });
  const meta: ImageMeta = {
    reference: 'bench.local/synthetic:100k', location: 'bench.local/synthetic', manifestDigest: `sha256:${'0'.repeat(64)}`,
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json', platform: { os: 'linux', architecture: 'amd64' },
    config: Buffer.from('{}'),
    layers: scans.map((s) => ({
      digest: s.digest, diffId: s.diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', compression: s.compression,
      compressedSize: s.compressedSize, uncompressedSize: s.uncompressedSize,
    })),
  };
  return { scans, meta, paths: [...seen] };
}
