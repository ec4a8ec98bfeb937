/**
 * `clip mount IMAGE|INDEX MOUNTPOINT` and `clip unmount MOUNTPOINT`: the image's root filesystem,
 * read-only through FUSE, fetching only what programs read.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { startBackground } from '../../mount/background.js';
import { requireRoot, type MountConfig } from '../../mount/serve.js';
import { runMount } from '../../mount/run.js';
import { unmountMountpoint } from '../../mount/unmount.js';
import { ClipError } from '../../util/errors.js';
import { createLogger } from '../../util/log.js';
import { formatSize, parseSize } from '../../util/size.js';
import { DEFAULT_BACKGROUND_RATE } from '../../storage/index.js';
import { addReadOptions, openForCommand, parseDuration, storageSettingsOf, type ReadCommandOptions } from '../image-arg.js';
import { createProgress } from '../progress.js';

export { parseDuration } from '../image-arg.js';

export interface MountCommandOptions extends ReadCommandOptions {
  background?: boolean;
  backgroundFetch?: string | boolean;
  metricsAddr?: string;
}

/** "16MiB", "16MiB/s" or "512k": bytes per second. */
export function parseRate(text: string): number {
  const bytes = parseSize(text.replace(/\/s$/i, ''));
  if (!(bytes > 0)) throw new ClipError('EINVAL', 'a rate must be positive', { object: text });
  return bytes;
}

export function mountConfigOf(image: string, mountpoint: string, opts: MountCommandOptions): MountConfig {
  return {
    image,
    mountpoint: resolve(mountpoint),
    ...(opts.cacheDir ? { cacheDir: resolve(opts.cacheDir) } : {}),
    ...storageSettingsOf(opts),
    ...(opts.backgroundFetch
      ? { backgroundFetch: { bytesPerSecond: typeof opts.backgroundFetch === 'string' ? parseRate(opts.backgroundFetch) : DEFAULT_BACKGROUND_RATE } }
      : {}),
    ...(opts.metricsAddr ? { metricsAddr: opts.metricsAddr } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(opts.insecureRegistry ? { insecureRegistry: opts.insecureRegistry } : {}),
    ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
  };
}

/** The daemon runs from "/" (so it holds no directory busy): make a local image argument absolute. */
function absoluteImageArg(image: string, isIndexFile: boolean): string {
  if (isIndexFile) return resolve(image);
  if (image.startsWith('oci:') && !image.startsWith('oci:/')) return `oci:${resolve(image.slice('oci:'.length))}`;
  return image;
}

export function registerMount(program: Command): void {
  const mount = program
    .command('mount')
    .description('mount an image read-only through FUSE (as root); it is indexed first when no index is given or cached')
    .argument('<image>', 'image reference or index file')
    .argument('<mountpoint>', 'an existing directory')
    .option('--background', 'return once the mount is ready, leaving a daemon (pid and log under CACHE_DIR/mounts/)')
    .option('--background-fetch [rate]', `while idle, fetch the rest of every layer to disk, at most RATE per second (default ${formatSize(DEFAULT_BACKGROUND_RATE)}/s)`)
    .option('--metrics-addr <[host:]port>', 'serve Prometheus metrics on this address');
  addReadOptions(mount, { json: false }).action(async (image: string, mountpoint: string, opts: MountCommandOptions, cmd: Command) => {
    requireRoot(mountpoint);
    const cfg = mountConfigOf(image, mountpoint, opts);
    if (opts.background) {
      // The daemon's log is a file: worth more than warnings unless the user chose a level.
      if (cmd.getOptionValueSource('logLevel') === 'default') cfg.logLevel = 'info';
      // Index here, where a progress display can be seen; the daemon then finds the index cached.
      const { img } = await openForCommand(image, opts);
      await img.close();
      const bg = await startBackground({ ...cfg, image: absoluteImageArg(image, img.origin === 'file') });
      process.stdout.write(`${bg.line}\n`);
      process.stderr.write(`clip: serving in the background (pid ${bg.pid}, log ${bg.files.log}); stop with: clip unmount ${cfg.mountpoint}\n`);
      return;
    }
    const logger = createLogger(opts.logLevel);
    let progress: ReturnType<typeof createProgress> | undefined;
    await runMount(cfg, {
      logger,
      onProgress: (e) => {
        progress ??= createProgress({ label: 'indexing' });
        if (e.kind === 'start') progress.addTotal(e.totalBytes);
        else if (e.kind === 'bytes') progress.advance(e.bytes);
        else progress.status(`layers ${e.layersDone}/${e.layers}`);
      },
      onReady: (line) => {
        progress?.stop();
        process.stdout.write(`${line}\n`);
      },
    });
  });

  program
    .command('unmount')
    .alias('umount')
    .description('stop the clip mount on MOUNTPOINT (its daemon, or the mount itself when no daemon serves it)')
    .argument('<mountpoint>')
    .option('--cache-dir <dir>', 'cache directory the mount was started with')
    .option('--timeout <duration>', 'how long to wait for the mount to end before aborting it', '10s')
    .option('--log-level <level>', 'log level on stderr', process.env.CLIP_LOG_LEVEL ?? 'warn')
    .action(async (mountpoint: string, opts: { cacheDir?: string; timeout: string; logLevel: string }) => {
      const result = await unmountMountpoint(mountpoint, {
        ...(opts.cacheDir ? { cacheDir: resolve(opts.cacheDir) } : {}),
        timeoutMs: parseDuration(opts.timeout),
        logger: createLogger(opts.logLevel),
      });
      const how = result.how === 'daemon' ? `stopped its daemon (pid ${result.pid})` : result.how === 'stale' ? 'removed a stale mount' : 'unmounted';
      process.stdout.write(`clip: ${resolve(mountpoint)}: ${how}\n`);
    });
}
