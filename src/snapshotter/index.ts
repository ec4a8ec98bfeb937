/** `clip snapshotter`: the store, the remote lookups, the image mounts and the gRPC service, started together. */
import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { silentLogger, type Logger } from '../util/log.js';
import { ImageMounts } from './image-mounts.js';
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
}

export interface RunningSnapshotter {
  address: string;
  snapshotter: Snapshotter;
  /** Stop serving and close the store; image mounts stay (running containers use them). */
  stop(): Promise<void>;
}

export async function startSnapshotter(cfg: SnapshotterConfig): Promise<RunningSnapshotter> {
  const log = cfg.logger ?? silentLogger;
  const root = resolve(cfg.root);
  const cacheDir = resolve(cfg.cacheDir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  await chmod(root, 0o700);
  const store = new SnapshotStore(join(root, 'metadata.lmdb'));
  const common = { cacheDir, ...(cfg.remoteCache ? { remoteCache: cfg.remoteCache } : {}), insecureRegistries: cfg.insecureRegistries ?? [], logger: log };
  const images = new ImageMounts({ root, ...common });
  const sn = new Snapshotter(root, store, new RemoteImages(common), images, log);
  try {
    await sn.restore();
    const server = await serveSnapshotter(sn, resolve(cfg.address), log);
    log.info({ address: server.address, root }, 'snapshotter: serving');
    return {
      address: server.address,
      snapshotter: sn,
      stop: async () => {
        await server.stop();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
