/**
 * The actions of `clip mount` and `clip unmount`. A background mount of an index file loads
 * nothing heavy here: the parent only checks the file's magic, and the daemon opens it.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { startBackground } from '../../server/background.js';
import { ensureServer, holdServer, keptServer } from '../../server/client.js';
import { indexFileKind } from '../../mount/index-file.js';
import type { OpenedImage, ResolvedHandoff } from '../../mount/open-image.js';
import { checkMountPlacement } from '../../mount/placement.js';
import type { MountConfig } from '../../mount/serve.js';
import { requireRoot } from '../../mount/require-root.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { ClipError, isClipError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { parseDuration } from '../read-options.js';
import { absoluteImageArg, mountConfigOf, type MountCommandOptions } from '../commands/mount.js';

export async function mountCommand(image: string, mountpoint: string, opts: MountCommandOptions, cmd: Command): Promise<void> {
  requireRoot(mountpoint);
  // At the default level the line logger: a mount handed to a kept server then loads neither pino
  // nor the image code (open-image and the index reader are imported only where this process
  // resolves the image itself).
  const { commandLogger } = await import('../logger.js');
  const logger = commandLogger(opts.logLevel, opts.logFormat); // a bad level or format fails here, before any work
  const cfg = mountConfigOf(image, mountpoint, opts);
  await checkMountPlacement(cfg.cacheDir ?? defaultCacheDir(), cfg.mountpoint); // before any indexing
  if (opts.background) {
    // The daemon's log is a file: worth more than warnings unless the user chose a level.
    if (cmd.getOptionValueSource('logLevel') === 'default') cfg.logLevel = 'info';
    // An index file is only checked for its magic here: the daemon loads it, and reports its errors.
    // An image reference is indexed here, where a progress display can be seen; the daemon then
    // finds the index cached.
    const isIndexFile = (await indexFileKind(image)) === 'index';
    const absolute = absoluteImageArg(image, isIndexFile);
    const cacheDir = cfg.cacheDir ?? defaultCacheDir();
    const inServer = async (extra: Partial<MountConfig>): Promise<void> => {
      const bg = await startBackground({ ...cfg, image: absolute, ...extra }).catch((err: unknown) => {
        // The daemon names the image as it was given to it (absolute): name it as the user wrote it.
        if (isClipError(err) && absolute !== image && err.message.startsWith(`${absolute}: `)) {
          throw new ClipError(err.code, err.message.slice(absolute.length + 2), { object: image, cause: err });
        }
        throw err;
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ mountpoint: cfg.mountpoint, pid: bg.pid, image, log: bg.log, ready: bg.line })}\n`);
        return;
      }
      process.stdout.write(`${bg.line}\n`);
      process.stderr.write(`clip: served by the node's clip server (pid ${bg.pid}, log ${bg.log}); stop with: clip unmount ${cfg.mountpoint}\n`);
    };
    // A server kept running (clip server start) has the registry code loaded: it resolves the image
    // itself, and this process loads none of it. Only an image with no index to find comes back
    // (ENOINDEX), to be indexed here, where its progress can be seen.
    if (!isIndexFile && (await keptServer(cacheDir))) {
      logger.debug('mount: the server is kept running; it resolves the image');
      const done = await inServer({ mayIndex: false }).then(() => true, (err: unknown) => {
        if (isClipError(err) && err.code === 'ENOINDEX') return false;
        throw err;
      });
      if (done) return;
    }
    // The node's server (two Node start-ups) starts now and is kept up while this process resolves
    // the image: its start-up and the registry round trips overlap instead of adding up. A server
    // that cannot start fails the mount with its error (naming its log), once the image is resolved.
    const serverUp = ensureServer(cacheDir).then(() => undefined, (err: unknown) => err);
    const releaseServer = holdServer(cacheDir);
    let resolved: ResolvedHandoff | undefined;
    try {
      if (!isIndexFile) {
        const [{ openForCommand }, { handoffOf }] = await Promise.all([import('../image-arg.js'), import('../../mount/open-image.js')]);
        const { img, logger: cmdLogger } = await openForCommand(image, opts);
        // Handed to the server, which then loads no registry, indexing or Redis code to open it.
        resolved = handoffOf(img);
        // The registry was just asked for the index (found there, or not and made here): its profile
        // is fetched here too, from the same referrers listing, while the server starts.
        if ((img.origin === 'registry' || img.origin === 'indexed') && opts.discover !== false) await profileAhead(img, cmdLogger);
        await img.close();
      }
      const failed = await serverUp;
      if (failed !== undefined) throw failed;
      logger.debug('mount: the server answers; asking it to mount');
    } finally {
      releaseServer();
    }
    await inServer(resolved ? { resolved } : {});
    return;
  }
  const [{ createProgress }, { runMount }] = await Promise.all([import('../progress.js'), import('../../mount/run.js')]);
  let progress: ReturnType<typeof createProgress> | undefined;
  await runMount(cfg, {
    logger,
    onProgress: (e) => {
      progress ??= createProgress({ label: 'indexing' });
      if (e.kind === 'start') progress.addTotal(e.totalBytes);
      else if (e.kind === 'bytes') progress.advance(e.bytes);
      else progress.status(`layers ${e.layersDone}/${e.layers}`);
    },
    onReady: (line, running) => {
      progress?.stop();
      const json = { mountpoint: running.mountpoint, pid: process.pid, image: running.image.index.image.reference, log: null, ready: line };
      process.stdout.write(`${opts.json ? JSON.stringify(json) : line}\n`);
    },
  });
}

/**
 * The image's published profile, kept in the local cache for the mount to find there: the index
 * lookup listed the image's referrers already, so this costs the profile's manifest and blob only.
 */
async function profileAhead(img: OpenedImage, logger: Logger): Promise<void> {
  const [{ keepPublishedProfile, indexDigestOf }, { RegistryRepository }] = await Promise.all([import('../../profile/store.js'), import('../../oci/registry-source.js')]);
  if (!(img.blobs instanceof RegistryRepository)) return;
  const target = { manifestDigest: img.index.image.manifestDigest, indexDigest: indexDigestOf(img.index.buffer), layers: img.layers.map((l) => l.diffId) };
  await keepPublishedProfile(target, img.blobs, img.cacheDir, logger);
}

export async function unmountCommand(mountpoint: string, opts: { cacheDir?: string; timeout: string; logLevel: string }): Promise<void> {
  const [{ createLogger }, { unmount }] = await Promise.all([import('../../util/log.js'), import('../../server/unmount.js')]);
  const result = await unmount(mountpoint, {
    ...(opts.cacheDir ? { cacheDir: resolve(opts.cacheDir) } : {}),
    timeoutMs: parseDuration(opts.timeout),
    logger: createLogger(opts.logLevel),
  });
  const how = result.how === 'server' ? `unmounted (clip server pid ${result.pid})` : result.how === 'daemon' ? `stopped its daemon (pid ${result.pid})` : result.how === 'stale' ? 'removed a stale mount' : 'unmounted';
  process.stdout.write(`clip: ${resolve(mountpoint)}: ${how}\n`);
}
