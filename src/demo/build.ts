/**
 * Builds the demo image into a cache directory once and reuses it while its inputs are unchanged:
 * written to a temp layout and renamed into place, with a record of what it was made from.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobPath, writeImage, type BuiltLayer } from '../oci/build/index.js';
import { DEMO_TAG, planDemo, type DemoPlan } from './plan.js';

export interface DemoImage {
  /** "oci:<dir>:demo" */
  ref: string;
  layoutDir: string;
  tag: string;
  manifestDigest: string;
  layers: Array<{ digest: string; size: number; diffId: string; uncompressedSize: number; createdBy: string }>;
  summary: DemoPlan['summary'];
  /** True when an existing image was reused rather than built. */
  reused: boolean;
}

interface DemoRecord extends Omit<DemoImage, 'reused' | 'ref' | 'layoutDir'> {
  fingerprint: string;
}

/** CLIP_DEMO_DIR, else the XDG cache (~/.cache/clip/demo), else <tmpdir>/clip-demo. */
export function defaultDemoDir(): string {
  if (process.env.CLIP_DEMO_DIR) return process.env.CLIP_DEMO_DIR;
  const xdg = process.env.XDG_CACHE_HOME || (process.env.HOME || homedir() ? join(process.env.HOME || homedir(), '.cache') : '');
  return xdg ? join(xdg, 'clip', 'demo') : join(tmpdir(), 'clip-demo');
}

async function usableDir(preferred: string | undefined): Promise<string> {
  const dir = preferred ?? defaultDemoDir();
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  } catch (err) {
    if (preferred) throw err;
    const fallback = join(tmpdir(), 'clip-demo');
    await mkdir(fallback, { recursive: true, mode: 0o700 });
    return fallback;
  }
}

async function readRecord(dir: string): Promise<DemoRecord | null> {
  try {
    const rec = JSON.parse(await readFile(join(dir, 'demo.json'), 'utf8')) as DemoRecord;
    // Complete only if the manifest and every layer are really there.
    for (const d of [rec.manifestDigest, ...rec.layers.map((l) => l.digest)]) await access(blobPath(join(dir, 'layout'), d));
    return rec;
  } catch {
    return null;
  }
}

export interface BuildDemoOptions {
  dir?: string;
  /** Build even if an up-to-date image is there. */
  rebuild?: boolean;
  /** python3 binaries to build around, in order (default: Debian's). */
  pythons?: readonly string[];
}

export async function buildDemoImage(opts: BuildDemoOptions = {}): Promise<DemoImage> {
  const dir = await usableDir(opts.dir);
  const layoutDir = join(dir, 'layout');
  const plan = await planDemo(opts.pythons ? { pythons: opts.pythons } : {});
  const existing = opts.rebuild ? null : await readRecord(dir);
  if (existing && existing.fingerprint === plan.fingerprint) {
    return { ref: `oci:${layoutDir}:${existing.tag}`, layoutDir, ...stripFingerprint(existing), reused: true };
  }

  const tmp = join(dir, `layout.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const img = await writeImage(tmp, { ...plan.spec, tag: DEMO_TAG });
    const record: DemoRecord = {
      fingerprint: plan.fingerprint,
      tag: DEMO_TAG,
      manifestDigest: img.manifest.digest,
      layers: img.layers.map((l: BuiltLayer, i) => ({
        digest: l.descriptor.digest, size: l.descriptor.size, diffId: l.diffId, uncompressedSize: l.uncompressedSize,
        createdBy: plan.spec.layers[i]?.createdBy ?? '',
      })),
      summary: plan.summary,
    };
    await rm(join(dir, 'demo.json'), { force: true }); // never a record that points at a layout being replaced
    await rm(layoutDir, { recursive: true, force: true });
    await rename(tmp, layoutDir);
    await writeFile(join(dir, 'demo.json'), JSON.stringify(record, null, 2));
    return { ref: `oci:${layoutDir}:${DEMO_TAG}`, layoutDir, ...stripFingerprint(record), reused: false };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function stripFingerprint(rec: DemoRecord): Omit<DemoImage, 'reused' | 'ref' | 'layoutDir'> {
  const { fingerprint: _f, ...rest } = rec;
  return rest;
}
