/**
 * `clip profile`: run the command in a container (as `clip run` does) on a fresh mount of the
 * image that records every read until the container ends, then keep the profile with the index:
 * the local cache and the shared cache (the mount does both as it stops), and with --push the
 * registry, as an artifact referring to the image manifest.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ClipError } from '../../util/errors.js';
import { printable } from '../../util/printable.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { decodeProfile } from '../../profile/format.js';
import { localProfilePath, publishProfile, storeSharedProfile } from '../../profile/store.js';
import { parseNetwork, parseVolume } from '../commands/run.js';
import type { ProfileCommandOptions } from '../commands/profile.js';
import { containerRequest } from './run.js';

export async function profileCommand(image: string, command: string[], opts: ProfileCommandOptions): Promise<void> {
  if (process.getuid?.() !== 0) throw new ClipError('EPERM', 'clip profile needs root (it mounts the image and runs runc)');
  if (opts.tty && !process.stdin.isTTY) throw new ClipError('EINVAL', '-t needs a terminal on stdin (this one is not)');
  parseNetwork(opts.network);
  (opts.volume ?? []).forEach(parseVolume);
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  const { req, close } = await containerRequest(image, command, opts, { profile: 'record' });
  await close();
  const { imageMountPaths } = await import('../../run/paths.js');
  const { endLinger, servingMount } = await import('../../run/image-mount.js');
  // A mount kept only by its linger (docs/run.md) is stopped: the profile needs a fresh one.
  await endLinger(cacheDir, req.manifestDigest);
  // A mount already serving containers started long ago (and its page cache is warm): its reads
  // are not a start. The profile needs a mount of its own.
  if (await servingMount(imageMountPaths(cacheDir, req.manifestDigest).mountpoint)) {
    throw new ClipError('EINVAL', 'the image is mounted for running containers; a profile needs a fresh mount: stop them first', { object: image });
  }
  const file = localProfilePath(cacheDir, req.manifestDigest);
  const before = await stat(file).then((s) => s.mtimeMs, () => 0);
  const { runContainer } = await import('../../run/index.js');
  const result = await runContainer(req);
  if (result.startError) throw new ClipError('EINVAL', `the container did not start (exit ${result.code}): ${result.startError}`, { object: image });
  // The mount kept the profile as it stopped (the container's end released it).
  const st = await stat(file).catch(() => undefined);
  if (!st || st.mtimeMs < before || (before > 0 && st.mtimeMs === before)) {
    throw new ClipError('ENOTFOUND', 'the mount kept no profile (did the command read nothing?)', { object: image });
  }
  const bytes = await readFile(file);
  const profile = decodeProfile(bytes, file);
  const logger = req.logger!;
  let shared = false;
  if (opts.remoteCache) {
    const { RedisChunkCache } = await import('../../storage/remote-cache.js');
    const remote = await RedisChunkCache.connect({ url: opts.remoteCache, logger });
    try {
      shared = await storeSharedProfile(remote, req.manifestDigest, bytes);
    } finally {
      await remote.close();
    }
  }
  let pushed: string | undefined;
  if (opts.push) {
    const { openImage, RegistryPusher, RegistryRepository } = await import('../../oci/index.js');
    const { registryOptionsOf } = await import('../image-arg.js');
    const { parsePlatform } = await import('../../oci/platform.js');
    const source = openImage(image, registryOptionsOf(opts));
    try {
      if (!(source instanceof RegistryRepository)) throw new ClipError('EINVAL', '--push needs an image in a registry (the profile is pushed to its repository)', { object: image });
      const resolved = await source.resolve(opts.platform ? { platform: parsePlatform(opts.platform) } : {});
      if (resolved.manifestDigest !== req.manifestDigest) throw new ClipError('EINVAL', `the image changed while it was profiled (now ${resolved.manifestDigest})`, { object: image });
      const subject = { mediaType: resolved.manifestMediaType, digest: resolved.manifestDigest, size: resolved.manifestBytes.length };
      pushed = (await publishProfile(source, new RegistryPusher(source), subject, profile, bytes)).digest;
    } finally {
      await source.close?.();
    }
  }
  const bytesRead = profile.ranges.reduce((n, r) => n + r.length, 0);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ image, manifestDigest: req.manifestDigest, indexDigest: profile.indexDigest, ranges: profile.ranges.length, bytesRead, profileBytes: bytes.length, file, shared, pushed: pushed ?? null, exitCode: result.code })}\n`);
  } else {
    process.stdout.write(`clip: profile of ${printable(image)}: ${profile.ranges.length} ranges, ${bytesRead} bytes read at start, ${bytes.length} bytes; kept in ${file}${shared ? ' and the shared cache' : ''}${pushed ? `; pushed as ${pushed}` : ''}\n`);
  }
  process.exitCode = result.code;
}
