/**
 * `clip snapshotter --address SOCKET`: a containerd remote snapshotter (proxy plugin) serving the
 * snapshots API on a unix socket until SIGTERM/SIGINT. Image mounts outlive it (containers use them)
 * and are taken up again on the next start.
 */
import type { Command } from 'commander';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { addLogOptions, addRegistryOptions, examples } from '../read-options.js';

export const DEFAULT_SNAPSHOTTER_ROOT = '/var/lib/clip-snapshotter';

interface SnapshotterOptions {
  address: string;
  root: string;
  cacheDir?: string;
  remoteCache?: string;
  insecureRegistry: string[];
  metrics?: string;
  logLevel?: string;
  logFormat?: string;
}

export function registerSnapshotter(program: Command): void {
  const cmd = program
    .command('snapshotter')
    .description('serve containerd\'s snapshots API (a proxy plugin): layers of images with a clip index are mounted lazily, others unpacked as overlayfs does (as root)')
    .requiredOption('--address <socket>', 'unix socket to serve on (containerd\'s proxy_plugins address)')
    .option('--root <dir>', 'snapshot directories and metadata', DEFAULT_SNAPSHOTTER_ROOT)
    .option('--cache-dir <dir>', `cache directory of the image mounts (default: ${defaultCacheDir()})`)
    .option('--remote-cache <url>', 'shared cache of chunks and indexes: redis://[:password@]host:port, rediss://..., redis+cluster://h1:p1,h2:p2')
    .option('--metrics <[host:]port>', 'serve Prometheus metrics per image (bytes per tier, reads, errors, mounts) on GET /metrics');
  addRegistryOptions(cmd);
  addLogOptions(cmd);
  examples(cmd, [
    'clip snapshotter --address /run/clip/snapshotter.sock --metrics 127.0.0.1:9464',
    'ctr-remote images rpull --snapshotter clip registry:5000/app:1.2 && ctr run --rm --snapshotter clip registry:5000/app:1.2 app1 /bin/sh -c "echo hi"',
  ]);
  cmd.action(async (opts: SnapshotterOptions) => {
    const { requireRoot } = await import('../../mount/require-root.js');
    requireRoot(opts.root);
    const { createLogger } = await import('../../util/log.js');
    const logger = createLogger(opts.logLevel, 2, opts.logFormat);
    const { startSnapshotter } = await import('../../snapshotter/index.js');
    const running = await startSnapshotter({
      address: opts.address,
      root: opts.root,
      cacheDir: opts.cacheDir ?? defaultCacheDir(),
      ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
      insecureRegistries: opts.insecureRegistry,
      ...(opts.metrics ? { metricsAddr: opts.metrics } : {}),
      logger,
    });
    process.stdout.write(`clip snapshotter serving on ${running.address}${running.metricsPort !== undefined ? ` (metrics on port ${running.metricsPort})` : ''}\n`);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        void running.stop().then(resolve);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
  });
}
