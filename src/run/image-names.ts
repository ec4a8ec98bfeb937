/**
 * The names an image mount was started or joined under: `images/<hex>/names/<sha256 of name and
 * platform>`, with the image config beside (`images/<hex>/config.json`). A later `clip run` of the
 * same name finds the mount serving and takes its manifest digest and config from here: it
 * neither resolves the name in the registry nor loads the index again (as `ctr run` and
 * `docker run` start an image pulled before without asking the registry). Both go with the image
 * directory when the mount stops, so a name is trusted only while its image stays mounted.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, writePrivateFile } from '../storage/cache-dir.js';
import { imageMountDigests, servingMount } from './image-mount.js';
import { imageMountPaths } from './paths.js';

function nameKey(name: string, platform: string | undefined): string {
  return createHash('sha256').update(`${name}\0${platform ?? ''}`).digest('hex');
}

/** Record that `name` (on `platform`) is the image mounted for `manifestDigest`. Call holding the run lock. */
export async function recordImageName(cacheDir: string, manifestDigest: string, name: string, platform: string | undefined, config: Buffer): Promise<void> {
  const { dir } = imageMountPaths(cacheDir, manifestDigest);
  await ensurePrivateDir(join(dir, 'names'));
  await writePrivateFile(join(dir, 'config.json'), config);
  await writePrivateFile(join(dir, 'names', nameKey(name, platform)), `${JSON.stringify({ name, platform: platform ?? null })}\n`);
}

/** The mounted image `name` was recorded for, if its mount serves now. */
export async function servedImageNamed(cacheDir: string, name: string, platform: string | undefined): Promise<{ manifestDigest: string; config: Buffer } | undefined> {
  const key = nameKey(name, platform);
  for (const digest of await imageMountDigests(cacheDir)) {
    const paths = imageMountPaths(cacheDir, digest);
    const known = await readFile(join(paths.dir, 'names', key)).then(() => true, () => false);
    if (!known || !(await servingMount(paths.mountpoint))) continue;
    const config = await readFile(join(paths.dir, 'config.json')).catch(() => undefined);
    if (config) return { manifestDigest: digest, config };
  }
  return undefined;
}
