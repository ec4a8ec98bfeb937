/**
 * The cold-start image: a runnable Python from this machine's own files, in three gzip layers,
 *   base:    dynamic loader, libc, /bin/sh and a few coreutils (as the demo image's base),
 *   bulk:    the rest of /usr/lib/x86_64-linux-gnu (an OS layer most containers never read),
 *   python:  Debian's /usr/bin/python3.11 with its libraries, /usr/lib/python3.11, /usr/lib/python3.
 * Built once into a cache directory and reused while the plan's version is unchanged.
 */
import { randomBytes } from 'node:crypto';
import { access, lstat, mkdir, readFile, readdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostTree, sharedLibraries } from '../../src/demo/index.js';
import { hostPlatform } from '../../src/demo/plan.js';
import { blobPath, writeImage, type LayerEntry } from '../../src/oci/build/index.js';

/** Bump when the plan changes: a cached image of another version is rebuilt. */
const PLAN_VERSION = 'coldstart-v1';
export const IMAGE_TAG = 'coldstart';
export const PYTHON = '/usr/bin/python3';

const FIXED = { sec: 1_700_000_000, nsec: 0 };
const COREUTILS = ['/bin/sh', '/usr/bin/ls', '/usr/bin/cat', '/usr/bin/env', '/usr/bin/true'];
const BULK_TREES = ['/usr/lib/x86_64-linux-gnu'];
const PYTHON_TREES = ['/usr/lib/python3.11', '/usr/lib/python3', '/etc/python3.11'];

export interface ColdstartImage {
  layoutDir: string;
  tag: string;
  layers: Array<{ name: string; digest: string; compressedSize: number; uncompressedSize: number; entries: number }>;
  compressedBytes: number;
  uncompressedBytes: number;
  reused: boolean;
}

interface Record_ extends Omit<ColdstartImage, 'layoutDir' | 'reused'> {
  version: string;
  manifestDigest: string;
}

async function addProgram(tree: HostTree, program: string): Promise<void> {
  for (const f of [program, ...(await sharedLibraries(program))]) await tree.addPath(f);
}

/** Every directory, file and symlink under `root`, parents first; symlinks are copied, not followed. */
async function addTree(tree: HostTree, root: string): Promise<void> {
  await tree.addPath(root); // the root and its parents (following /lib -> usr/lib style links)
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const st = await lstat(path, { bigint: true });
      const imagePath = path.slice(1);
      const meta = {
        mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid),
        mtime: { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) },
      };
      if (tree.has(imagePath)) {
        if (st.isDirectory()) await walk(path);
        continue;
      }
      if (st.isDirectory()) {
        tree.addEntry({ type: 'dir', path: imagePath, ...meta, mtime: FIXED });
        await walk(path);
      } else if (st.isFile()) tree.addEntry({ type: 'file', path: imagePath, content: { path }, ...meta });
      else if (st.isSymbolicLink()) tree.addEntry({ type: 'symlink', path: imagePath, target: await readlink(path), ...meta });
      // sockets, fifos and devices have no place in an image of library trees
    }
  };
  await walk(root);
}

const made = (path: string, content: string): LayerEntry => ({ type: 'file', path, content, mode: 0o644, mtime: FIXED });
const dir = (path: string, mode = 0o755): LayerEntry => ({ type: 'dir', path, mode, mtime: FIXED });

async function plan(): Promise<Array<{ name: string; entries: LayerEntry[] }>> {
  const tree = new HostTree();
  for (const d of [dir('etc'), dir('tmp', 0o1777), dir('root', 0o700), dir('proc'), dir('dev'), dir('sys')]) tree.addEntry(d);
  tree.addEntry(made('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'));
  tree.addEntry(made('etc/group', 'root:x:0:\n'));
  for (const p of COREUTILS) await addProgram(tree, p);
  const base = tree.nextLayer();
  for (const t of BULK_TREES) await addTree(tree, t);
  const bulk = tree.nextLayer();
  await addProgram(tree, PYTHON);
  for (const t of PYTHON_TREES) await addTree(tree, t);
  const python = tree.nextLayer();
  return [{ name: 'base', entries: base }, { name: 'bulk', entries: bulk }, { name: 'python', entries: python }];
}

async function readRecord(dir: string): Promise<Record_ | null> {
  try {
    const rec = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as Record_;
    if (rec.version !== PLAN_VERSION) return null;
    for (const d of [rec.manifestDigest, ...rec.layers.map((l) => l.digest)]) await access(blobPath(join(dir, 'layout'), d));
    return rec;
  } catch {
    return null;
  }
}

/** The image in `dir`/layout, built unless a complete one of this plan version is there. */
export async function buildColdstartImage(dir: string, log: (line: string) => void): Promise<ColdstartImage> {
  await mkdir(dir, { recursive: true });
  const layoutDir = join(dir, 'layout');
  const existing = await readRecord(dir);
  if (existing) {
    const { version: _v, manifestDigest: _m, ...rest } = existing;
    return { layoutDir, ...rest, reused: true };
  }
  const layers = await plan();
  log(`building the image (${layers.map((l) => `${l.name}: ${l.entries.length} entries`).join(', ')}) ...`);
  const tmp = join(dir, `layout.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const img = await writeImage(tmp, {
      tag: IMAGE_TAG,
      platform: hostPlatform(),
      config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], Cmd: [PYTHON] },
      layers: layers.map((l) => ({ entries: l.entries, createdBy: `coldstart bench: ${l.name}` })),
    });
    const built = img.layers.map((l, i) => ({
      name: layers[i]!.name, digest: l.descriptor.digest, compressedSize: l.descriptor.size,
      uncompressedSize: l.uncompressedSize, entries: layers[i]!.entries.length,
    }));
    const record: Record_ = {
      version: PLAN_VERSION,
      manifestDigest: img.manifest.digest,
      tag: IMAGE_TAG,
      layers: built,
      compressedBytes: built.reduce((n, l) => n + l.compressedSize, 0),
      uncompressedBytes: built.reduce((n, l) => n + l.uncompressedSize, 0),
    };
    await rm(join(dir, 'image.json'), { force: true });
    await rm(layoutDir, { recursive: true, force: true });
    await rename(tmp, layoutDir);
    await writeFile(join(dir, 'image.json'), JSON.stringify(record, null, 2));
    const { version: _v, manifestDigest: _m, ...rest } = record;
    return { layoutDir, ...rest, reused: false };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
