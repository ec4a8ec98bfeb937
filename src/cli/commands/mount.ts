/**
 * `clip mount IMAGE|INDEX MOUNTPOINT` and `clip unmount MOUNTPOINT`: their definitions and the
 * mount's configuration from its options; the actions are ../actions/mount.ts, loaded when one runs.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { MountConfig } from '../../mount/serve.js';
import { insecureRegistriesFromEnv } from '../../oci/insecure-registries.js';
import { ClipError } from '../../util/errors.js';
import { parseSize } from '../../util/size.js';
import { addReadOptions, examples, storageSettingsOf, type ReadCommandOptions } from '../read-options.js';

export { parseDuration } from '../read-options.js';

/**
 * What the help shows as --background-fetch's default rate; storage's DEFAULT_BACKGROUND_RATE is
 * the rate itself (a test holds them equal). Not imported: that module loads the logger.
 */
export const DEFAULT_RATE_TEXT = '16.0 MiB/s';

export interface MountCommandOptions extends ReadCommandOptions {
  background?: boolean;
  backgroundFetch?: string | boolean;
  metricsAddr?: string;
  allowSuid?: boolean;
  allowDev?: boolean;
}

/** "16MiB", "16MiB/s" or "512k": bytes per second. */
export function parseRate(text: string): number {
  const bytes = parseSize(text.replace(/\/s$/i, ''));
  if (!(bytes > 0)) throw new ClipError('EINVAL', 'a rate must be positive', { object: text });
  return bytes;
}

export function mountConfigOf(image: string, mountpoint: string, opts: MountCommandOptions): MountConfig {
  const insecure = [...new Set([...(opts.insecureRegistry ?? []), ...insecureRegistriesFromEnv()])];
  return {
    image,
    mountpoint: resolve(mountpoint),
    ...(opts.cacheDir ? { cacheDir: resolve(opts.cacheDir) } : {}),
    ...storageSettingsOf(opts),
    ...(opts.backgroundFetch
      ? { backgroundFetch: typeof opts.backgroundFetch === 'string' ? { bytesPerSecond: parseRate(opts.backgroundFetch) } : {} }
      : {}),
    ...(opts.metricsAddr ? { metricsAddr: opts.metricsAddr } : {}),
    ...(opts.allowSuid ? { allowSuid: true } : {}),
    ...(opts.allowDev ? { allowDev: true } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(opts.discover === false ? { discover: false } : {}),
    // The environment's too: the node's server that reads (and may resolve) the image has its own.
    ...(insecure.length ? { insecureRegistry: insecure } : {}),
    ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
  };
}

/** The daemon runs from "/" (so it holds no directory busy): make a local image argument absolute. */
export function absoluteImageArg(image: string, isIndexFile: boolean): string {
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
    .option('--background', "return once the mount is ready; the node's clip server serves it (one per cache directory, started when none runs; log in CACHE_DIR/server/)")
    .option('--background-fetch [rate]', `while idle, fetch the rest of every layer to disk, at most RATE per second (default ${DEFAULT_RATE_TEXT})`)
    .option('--metrics-addr <[host:]port>', 'serve Prometheus metrics on this address')
    // Off by default: the mount is open to every user (allow_other), and a setuid-root file or a
    // device node from any image would then work for all of them.
    .option('--allow-suid', "honour the image's setuid/setgid bits and file capabilities (default: nosuid)")
    .option('--allow-dev', "let the image's device nodes be opened (default: nodev)");
  mount.option('--json', 'once ready, print {mountpoint, pid, image, log} as JSON instead of the ready line');
  examples(mount, [
    'mkdir -p /mnt/app && clip mount ghcr.io/org/app:1.2 /mnt/app --background',
    'clip mount app.clip /mnt/app --remote-cache redis://cache:6379 --background-fetch 32MiB',
    'chroot /mnt/app /bin/sh',
  ]);
  addReadOptions(mount, { json: false }).action(async (image: string, mountpoint: string, opts: MountCommandOptions, cmd: Command) => (await import('../actions/mount.js')).mountCommand(image, mountpoint, opts, cmd));

  program
    .command('mounts')
    .description("list clip's running mounts: image, process, uptime, memory, bytes served per tier")
    .option('--cache-dir <dir>', 'cache directory the mounts were started with')
    .option('--json', 'print JSON for scripts')
    .addHelpText('after', '\nExamples:\n  $ clip mounts\n  $ clip mounts --json\n')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => (await import('../actions/mounts.js')).mountsCommand(opts));

  program
    .command('unmount')
    .alias('umount')
    .description('stop the clip mount on MOUNTPOINT (through the server or process serving it, or the mount itself when none does)')
    .argument('<mountpoint>')
    .option('--cache-dir <dir>', 'cache directory the mount was started with')
    .option('--timeout <duration>', 'how long to wait for the mount to end before aborting it', '10s')
    .option('--log-level <level>', 'log level on stderr', process.env.CLIP_LOG_LEVEL ?? 'warn')
    .addHelpText('after', '\nExamples:\n  $ clip unmount /mnt/app\n')
    .action(async (mountpoint: string, opts: { cacheDir?: string; timeout: string; logLevel: string }) => (await import('../actions/mount.js')).unmountCommand(mountpoint, opts));
}
