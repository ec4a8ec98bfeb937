/** `clip snapshotter`: the store, the remote lookups, the image mounts and the gRPC service, started together. */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { processStartTime } from '../mount/files.js';
import { readPrivateFile, writePrivateFile } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { join, resolve } from 'node:path';
import { silentLogger, type Logger } from '../util/log.js';
import type { Server } from 'node:http';
import { ensureServer, holdServer } from '../server/client.js';
import { ImageMounts } from './image-mounts.js';
import { SnapshotterMetrics } from './metrics.js';
import { RemoteImages } from './remote.js';
import { serveSnapshotter } from './server.js';
import { Snapshotter } from './snapshotter.js';
import { SnapshotStore } from './store.js';

export interface SnapshotterConfig {
  address: string;
  root: string;
  cacheDir: string;
  remoteCache?: string;
  insecureRegistries?: string[];
  logger?: Logger;
  /** "[host:]port" for the Prometheus endpoint (per-image series). */
  metricsAddr?: string;
  /** Start the node's clip server now and keep it up while the snapshotter runs (default true). */
  holdServer?: boolean;
}

export interface RunningSnapshotter {
  address: string;
  snapshotter: Snapshotter;
  metrics: SnapshotterMetrics;
  /** The metrics endpoint's port, when one was asked for. */
  metricsPort?: number;
  /** Stop serving and close the store; image mounts stay (running containers use them). */
  stop(): Promise<void>;
}

export async function startSnapshotter(cfg: SnapshotterConfig): Promise<RunningSnapshotter> {
  const log = cfg.logger ?? silentLogger;
  const root = resolve(cfg.root);
  const cacheDir = resolve(cfg.cacheDir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  await chmod(root, 0o700);
  await claimRoot(root);
  const store = new SnapshotStore(join(root, 'metadata.lmdb'));
  const metrics = new SnapshotterMetrics(root, cacheDir, log);
  const common = { cacheDir, ...(cfg.remoteCache ? { remoteCache: cfg.remoteCache } : {}), insecureRegistries: cfg.insecureRegistries ?? [], logger: log, metrics };
  const images = new ImageMounts({ root, ...common });
  const sn = new Snapshotter(root, store, new RemoteImages(common), images, log, common.insecureRegistries, metrics);
  let metricsServer: Server | undefined;
  let release: (() => void) | undefined;
  try {
    // The node's server is started now, not by the first container's Mounts (two Node start-ups
    // that `ctr run` would wait for), and kept up while the snapshotter runs.
    if (cfg.holdServer !== false) {
      const t0 = Date.now();
      // Not fatal: images without an index need no server, and the holding tries again.
      await ensureServer(cacheDir).then(
        (pid) => log.info({ pid, ms: Date.now() - t0 }, 'snapshotter: the node\'s clip server is up'),
        (err: unknown) => log.error({ err: (err as Error).message, cacheDir }, 'snapshotter: cannot start the node\'s clip server (image mounts will try again)'),
      );
      release = holdServer(cacheDir, (err) => log.warn({ err: (err as Error).message }, 'snapshotter: cannot reach the node\'s clip server'));
    }
    await sn.restore();
    if (cfg.metricsAddr) metricsServer = await metrics.serve(cfg.metricsAddr);
    const server = await serveSnapshotter(sn, resolve(cfg.address), log, metrics);
    const metricsAt = metricsServer?.address();
    log.info({ address: server.address, root, ...(metricsAt && typeof metricsAt === 'object' ? { metrics: `${metricsAt.address}:${metricsAt.port}` } : {}) }, 'snapshotter: serving');
    return {
      address: server.address,
      snapshotter: sn,
      metrics,
      ...(metricsAt && typeof metricsAt === 'object' ? { metricsPort: metricsAt.port } : {}),
      stop: async () => {
        release?.();
        metricsServer?.close();
        await server.stop();
        await store.close();
        await releaseRoot(root);
      },
    };
  } catch (err) {
    release?.();
    metricsServer?.close();
    await store.close();
    await releaseRoot(root);
    throw err;
  }
}

/**
 * One snapshotter per root: its pid and start time in ROOT/snapshotter.pid. A file left by a process
 * that is gone (killed) is taken over; one naming a live snapshotter is refused.
 */
async function claimRoot(root: string): Promise<void> {
  const file = join(root, 'snapshotter.pid');
  const [pidLine, startTime] = ((await readPrivateFile(file)) ?? '').split('\n');
  const pid = Number(pidLine);
  if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && startTime && processStartTime(pid) === startTime) {
    throw new ClipError('EINVAL', `another clip snapshotter (pid ${pid}) serves this root`, { object: root });
  }
  await writePrivateFile(file, `${process.pid}\n${processStartTime(process.pid) ?? ''}\n`);
}

async function releaseRoot(root: string): Promise<void> {
  const file = join(root, 'snapshotter.pid');
  if (Number(((await readPrivateFile(file)) ?? '').split('\n')[0]) === process.pid) await rm(file, { force: true });
}
