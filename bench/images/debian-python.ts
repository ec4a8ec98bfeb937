/**
 * A realistic bench image, made by Debian's own tools and umoci (run by hand, as root):
 *   node --import tsx bench/images/debian-python.ts [--rebuild]
 * Two gzip layers:
 *   base:    `debootstrap --variant=minbase bookworm` (apt caches and lists removed),
 *   python:  `apt-get install --no-install-recommends python3` run in a chroot of the base
 *            (umoci repack records the difference; caches and lists removed again).
 * Tag `latest` (Env PATH, Cmd python3); `base` is the one-layer image. Built once into
 * .tmp/bench-images/debian-python/layout and reused while the plan's version is unchanged.
 * Needs debootstrap, umoci, tar, network to the Debian mirror (DEBIAN_MIRROR), and root.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { blobPath } from '../../src/oci/build/index.js';

/** Bump when the plan changes: a cached image of another version is rebuilt. */
const PLAN_VERSION = 'debian-python-v1';
export const IMAGE_TAG = 'latest';
export const BASE_TAG = 'base';
export const PYTHON = '/usr/bin/python3';
const SUITE = 'bookworm';
const MIRROR = process.env.DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEBIAN_PYTHON_DIR = path.join(REPO_ROOT, '.tmp/bench-images/debian-python');
const CHROOT_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'DEBIAN_FRONTEND=noninteractive', 'LC_ALL=C'];

export interface ImageLayer {
  name: string;
  digest: string;
  diffId: string;
  compressedSize: number;
  uncompressedSize: number;
  /** Tar entries in the layer (files, directories, links, whiteouts). */
  entries: number;
  createdBy: string;
}

export interface DebianPythonImage {
  layoutDir: string;
  tag: string;
  manifestDigest: string;
  layers: ImageLayer[];
  compressedBytes: number;
  uncompressedBytes: number;
  reused: boolean;
}

interface Record_ extends Omit<DebianPythonImage, 'layoutDir' | 'reused'> {
  version: string;
  builtAt: string;
  buildSeconds: number;
}

const execFileP = promisify(execFile);

async function sh(cmd: string, args: string[], log?: (line: string) => void): Promise<string> {
  const t0 = performance.now();
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 256 * 1024 * 1024 });
    log?.(`  ${cmd} ${args.join(' ')}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const tail = (e.stderr?.trim() || e.stdout?.trim() || e.message).split('\n').slice(-20).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${tail}`);
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo, octal escapes undone). */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info.split('\n').filter(Boolean).map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  return points.filter((p) => p === dir || p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}

/**
 * Remove a build directory, first unmounting whatever a failed debootstrap or chroot left mounted
 * under it (proc, sys, a bind of /dev): a recursive rm must never walk into the host's files.
 */
async function removeBuildDir(dir: string): Promise<void> {
  for (const p of await mountsUnder(dir)) await sh('umount', ['-l', p]).catch(() => undefined);
  const left = await mountsUnder(dir);
  if (left.length) throw new Error(`still mounted under ${dir}: ${left.join(', ')}; not removing it`);
  await rm(dir, { recursive: true, force: true });
}

/** Remove the package archives, apt's binary caches and the package lists (as Dockerfiles do). */
async function cleanApt(rootfs: string): Promise<void> {
  const matching = async (d: string, keep: (name: string) => boolean): Promise<void> => {
    const names = await readdir(path.join(rootfs, d)).catch(() => [] as string[]);
    for (const n of names.filter(keep)) await rm(path.join(rootfs, d, n), { recursive: true, force: true });
  };
  await matching('var/cache/apt/archives', (n) => n.endsWith('.deb'));
  await matching('var/cache/apt', (n) => n.endsWith('.bin'));
  await matching('var/lib/apt/lists', () => true);
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

async function readJsonBlob<T>(layoutDir: string, digest: string): Promise<T> {
  return JSON.parse(await readFile(blobPath(layoutDir, digest), 'utf8')) as T;
}

async function manifestOf(layoutDir: string, tag: string): Promise<{ digest: string; layers: Descriptor[]; diffIds: string[]; history: Array<{ created_by?: string; empty_layer?: boolean }> }> {
  const top = JSON.parse(await readFile(path.join(layoutDir, 'index.json'), 'utf8')) as { manifests: Array<Descriptor & { annotations?: Record<string, string> }> };
  const desc = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!desc) throw new Error(`${layoutDir} has no tag ${tag}`);
  const manifest = await readJsonBlob<{ config: Descriptor; layers: Descriptor[] }>(layoutDir, desc.digest);
  const config = await readJsonBlob<{ rootfs: { diff_ids: string[] }; history?: Array<{ created_by?: string; empty_layer?: boolean }> }>(layoutDir, manifest.config.digest);
  return { digest: desc.digest, layers: manifest.layers, diffIds: config.rootfs.diff_ids, history: (config.history ?? []).filter((h) => !h.empty_layer) };
}

/** Uncompressed bytes and tar entries of a gzip layer blob. */
async function layerStats(file: string): Promise<{ uncompressedSize: number; entries: number }> {
  let uncompressedSize = 0;
  let entries = 0;
  const gunzip = createGunzip();
  gunzip.on('data', (b: Buffer) => (uncompressedSize += b.length));
  const extract = tar.extract();
  extract.on('entry', (_header, stream, next) => {
    entries++;
    stream.on('end', next);
    stream.resume();
  });
  // Count the bytes as they leave gunzip, tar padding and end blocks included (the layer's diff_id size).
  await pipeline(createReadStream(file), gunzip, extract);
  return { uncompressedSize, entries };
}

async function readRecord(dir: string): Promise<Record_ | null> {
  try {
    const rec = JSON.parse(await readFile(path.join(dir, 'image.json'), 'utf8')) as Record_;
    if (rec.version !== PLAN_VERSION) return null;
    for (const d of [rec.manifestDigest, ...rec.layers.map((l) => l.digest)]) await access(blobPath(path.join(dir, 'layout'), d));
    return rec;
  } catch {
    return null;
  }
}

function result(dir: string, rec: Record_, reused: boolean): DebianPythonImage {
  const { version: _v, builtAt: _b, buildSeconds: _s, ...rest } = rec;
  return { layoutDir: path.join(dir, 'layout'), ...rest, reused };
}

export interface BuildOptions {
  dir?: string;
  /** Build again even when a complete image of this plan version is there. */
  rebuild?: boolean;
  log?: (line: string) => void;
}

/**
 * The index file of the debian-python image, made once by this tree's `clip index` (built) into
 * .tmp/bench-index-checks/cache, or INDEX=FILE.
 */
export async function debianPythonIndexFile(): Promise<string> {
  if (process.env.INDEX) return process.env.INDEX;
  const cacheDir = path.join(REPO_ROOT, '.tmp/bench-index-checks/cache');
  const dir = path.join(cacheDir, 'indexes');
  const made = (await readdir(dir).catch(() => [] as string[])).find((f) => f.endsWith('.clip'));
  if (made) return path.join(dir, made);
  const image = await buildDebianPython();
  await execFileP('node', [path.join(REPO_ROOT, 'dist/cli/main.js'), 'index', `oci:${image.layoutDir}:${image.tag}`, '--cache-dir', cacheDir, '--no-progress'], { maxBuffer: 64 << 20 });
  return debianPythonIndexFile();
}

/** The debian-python image in `dir`/layout (tag `latest`), built unless a complete one of this plan version is there. */
export async function buildDebianPython(opts: BuildOptions = {}): Promise<DebianPythonImage> {
  const dir = opts.dir ?? DEBIAN_PYTHON_DIR;
  const log = opts.log ?? ((line: string) => console.error(line));
  await mkdir(dir, { recursive: true });
  if (!opts.rebuild) {
    const existing = await readRecord(dir);
    if (existing) return result(dir, existing, true);
  }
  if (process.getuid?.() !== 0) throw new Error('building the debian-python image needs root (debootstrap, chroot, umoci ownership)');
  const t0 = performance.now();
  const work = path.join(dir, `build-${process.pid}`);
  await removeBuildDir(work);
  await mkdir(work);
  const layout = path.join(work, 'layout');
  const b1 = path.join(work, 'bundle1');
  const b2 = path.join(work, 'bundle2');
  const baseBy = `debootstrap --variant=minbase ${SUITE} ${MIRROR}`;
  const pythonBy = 'apt-get install -y --no-install-recommends python3';
  try {
    log(`building the debian-python image in ${work} (${PLAN_VERSION}) ...`);
    await sh('umoci', ['init', '--layout', layout], log);
    await sh('umoci', ['new', '--image', `${layout}:${BASE_TAG}`], log);

    // Layer 1: the minimal Debian system.
    await sh('umoci', ['unpack', '--image', `${layout}:${BASE_TAG}`, b1], log);
    await sh('debootstrap', ['--variant=minbase', SUITE, path.join(b1, 'rootfs'), MIRROR], log);
    await cleanApt(path.join(b1, 'rootfs'));
    // debootstrap copies the host's resolv.conf in; an image should not carry this machine's resolver.
    await rm(path.join(b1, 'rootfs/etc/resolv.conf'), { force: true });
    await sh('umoci', ['repack', '--image', `${layout}:${BASE_TAG}`, '--history.created_by', baseBy, b1], log);
    await removeBuildDir(b1);

    // Layer 2: python3 from apt, in a chroot of layer 1 (no /proc needed for these packages).
    await sh('umoci', ['unpack', '--image', `${layout}:${BASE_TAG}`, b2], log);
    const r2 = path.join(b2, 'rootfs');
    await writeFile(path.join(r2, 'etc/resolv.conf'), await readFile('/etc/resolv.conf'));
    await sh('chroot', [r2, '/usr/bin/env', '-i', ...CHROOT_ENV, '/bin/sh', '-c', `apt-get update -qq && ${pythonBy} -qq`], log);
    await sh('chroot', [r2, '/usr/bin/env', '-i', ...CHROOT_ENV, PYTHON, '-c', 'import json']);
    await cleanApt(r2);
    await rm(path.join(r2, 'etc/resolv.conf'), { force: true });
    await sh('umoci', ['repack', '--image', `${layout}:python`, '--history.created_by', pythonBy, b2], log);
    await removeBuildDir(b2);
    await sh('umoci', ['config', '--image', `${layout}:python`, '--tag', IMAGE_TAG, '--config.env', CHROOT_ENV[0]!, '--config.cmd', PYTHON], log);
    await sh('umoci', ['rm', '--image', `${layout}:python`]);
    await sh('umoci', ['gc', '--layout', layout]);

    const m = await manifestOf(layout, IMAGE_TAG);
    if (m.layers.length !== 2) throw new Error(`expected two layers, umoci made ${m.layers.length}`);
    const names = ['base', 'python'];
    const layers: ImageLayer[] = [];
    for (const [i, l] of m.layers.entries()) {
      const stats = await layerStats(blobPath(layout, l.digest));
      layers.push({ name: names[i]!, digest: l.digest, diffId: m.diffIds[i]!, compressedSize: l.size, ...stats, createdBy: m.history[i]?.created_by ?? '' });
    }
    const rec: Record_ = {
      version: PLAN_VERSION,
      builtAt: new Date().toISOString(),
      buildSeconds: (performance.now() - t0) / 1000,
      tag: IMAGE_TAG,
      manifestDigest: m.digest,
      layers,
      compressedBytes: layers.reduce((n, l) => n + l.compressedSize, 0),
      uncompressedBytes: layers.reduce((n, l) => n + l.uncompressedSize, 0),
    };
    await rm(path.join(dir, 'image.json'), { force: true });
    await rm(path.join(dir, 'layout'), { recursive: true, force: true });
    await rename(layout, path.join(dir, 'layout'));
    await writeFile(path.join(dir, 'image.json'), JSON.stringify(rec, null, 2));
    log(`built in ${rec.buildSeconds.toFixed(0)} s`);
    return result(dir, rec, false);
  } finally {
    await removeBuildDir(work);
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

/** A markdown table of the image's layers. */
export function describeImage(img: DebianPythonImage): string {
  return [
    `${path.relative(REPO_ROOT, img.layoutDir)}:${img.tag} (${img.manifestDigest}): ${mb(img.compressedBytes)} compressed, ${mb(img.uncompressedBytes)} (${mib(img.uncompressedBytes)}) uncompressed`,
    '',
    '| layer | created by | entries | compressed | uncompressed | digest |',
    '|---|---|---|---|---|---|',
    ...img.layers.map((l) => `| ${l.name} | \`${l.createdBy}\` | ${l.entries} | ${mb(l.compressedSize)} | ${mb(l.uncompressedSize)} (${mib(l.uncompressedSize)}) | ${l.digest.slice(0, 19)} |`),
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const img = await buildDebianPython({ rebuild: process.argv.includes('--rebuild') });
  console.log(`image ${img.reused ? 'reused' : 'built'}: ${describeImage(img)}`);
}
