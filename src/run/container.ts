/**
 * A container's life on disk: its record (state.json), its writable overlay on the shared image
 * mount, its runtime config; its teardown; and the sweep that tears down whatever a killed
 * `clip run` (or a `clip bundle` killed half-way) left: runc state, overlay, directories, image
 * references and the image mounts nobody uses any more.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { hostname as hostHostname } from 'node:os';
import { join } from 'node:path';
import { mountsAt } from '../fuse/mountinfo.js';
import type { MountConfig } from '../mount/serve.js';
import { ensurePrivateDir, readPrivateFile, writePrivateFile } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import {
  acquireImageMount, imageMountDigests, mountedUnder, ownerAlive, releaseImageMount, selfOwner, stopIfUnused, type RefOwner,
} from './image-mount.js';
import { recordImageName } from './image-names.js';
import { processSettings, runtimeSettings, workingDir, type ProcessRequest } from './image-config.js';
import { mkdirInRoot } from './in-root.js';
import { withLock } from './lock.js';
import { checkOverlayPath, containerPaths, CONTAINER_ID, imageMountPaths, runPaths, type ContainerPaths } from './paths.js';
import { runtimeSpec, type NetworkMode, type Volume } from './spec.js';
import { tool } from './tools.js';

export interface ContainerRecord {
  id: string;
  kind: 'run' | 'bundle';
  /** The image as the user named it. */
  image: string;
  manifestDigest: string;
  /** The `clip run` (or `clip bundle`) process; a finished bundle is owned by its directory. */
  owner: RefOwner;
  /** --keep: the writable layer outlives the container (the sweep leaves it). */
  kept?: boolean;
  /** For a bundle: its directory. */
  bundleDir?: string;
  created: string;
}

/** What a container is made from: the opened image's facts and the caller's settings. */
export interface ContainerRequest extends ProcessRequest {
  cacheDir: string;
  /** The image as the user named it (for errors and records). */
  image: string;
  manifestDigest: string;
  /** The raw image config blob. */
  config: Buffer;
  /** How to mount the image if nothing serves it yet. */
  mount: Omit<MountConfig, 'mountpoint' | 'cacheDir'>;
  network: NetworkMode;
  volumes: Volume[];
  keep?: boolean;
  /** Keep the image mounted this long (ms) after the container ends, if it was the last (linger.ts). */
  lingerMs?: number;
  /** No writable layer: the root is the image (under an init layer), read-only. */
  readOnly?: boolean;
  /** For `clip bundle`: the bundle directory (config.json and rootfs go there). */
  bundleDir?: string;
  logger?: Logger;
}

export interface PreparedContainer {
  id: string;
  paths: ContainerPaths;
  /** The directory holding config.json (runc's --bundle). */
  bundle: string;
  rootfs: string;
  record: ContainerRecord;
}

export function newContainerId(): string {
  return `clip-${randomBytes(6).toString('hex')}`;
}

async function writeRecord(paths: ContainerPaths, record: ContainerRecord): Promise<void> {
  await writePrivateFile(paths.state, `${JSON.stringify(record, null, 2)}\n`);
}

export async function readRecord(paths: ContainerPaths): Promise<ContainerRecord | undefined> {
  try {
    return JSON.parse((await readPrivateFile(paths.state)) ?? '') as ContainerRecord;
  } catch {
    return undefined;
  }
}

/**
 * Record the container, take its reference on the image mount (mounting the image if needed),
 * mount its overlay, resolve its process from the image config and write its config.json. On
 * failure everything made so far is undone.
 */
export async function prepareContainer(req: ContainerRequest): Promise<PreparedContainer> {
  const log = req.logger ?? silentLogger;
  const run = runPaths(req.cacheDir);
  const id = newContainerId();
  const paths = containerPaths(req.cacheDir, id);
  checkOverlayPath(paths.dir);
  const record: ContainerRecord = {
    id, kind: req.bundleDir ? 'bundle' : 'run', image: req.image, manifestDigest: req.manifestDigest, owner: selfOwner(),
    ...(req.keep ? { kept: false } : {}), ...(req.bundleDir ? { bundleDir: req.bundleDir } : {}), created: new Date().toISOString(),
  };
  await ensurePrivateDir(run.containers);
  const imageMount = await withLock(run.lock, async () => {
    await sweepLocked(req.cacheDir, log);
    // Made under the lock, record first: a sweep never sees a directory of ours without its record.
    await mkdir(paths.dir, { mode: 0o700 });
    await writeRecord(paths, record);
    const acquired = await acquireImageMount({
      cacheDir: req.cacheDir, manifestDigest: req.manifestDigest, holder: id, owner: record.owner, mount: req.mount, logger: log, locked: true,
    }).catch(async (err: unknown) => {
      await rm(paths.dir, { recursive: true, force: true });
      throw err;
    });
    // The next run of this name finds the mount by it (image-names.ts); a failure only costs it a resolve.
    await recordImageName(req.cacheDir, req.manifestDigest, req.mount.image, req.mount.platform, req.config)
      .catch((err: unknown) => log.debug({ err }, 'run: cannot record the image name'));
    return acquired;
  });
  let etcDone: Promise<void> | undefined;
  try {
    checkOverlayPath(imageMount.mountpoint);
    const rootfs = req.bundleDir ? join(req.bundleDir, 'rootfs') : paths.rootfs;
    const bundle = req.bundleDir ?? paths.dir;
    checkOverlayPath(rootfs);
    const hostname = req.network === 'host' ? hostHostname() : id.slice('clip-'.length);
    // The container's /etc files do not wait on its overlay (nor it on them).
    const etcWritten = mkdir(paths.etc, { mode: 0o755 }).then(() => writeEtcFiles(paths, hostname, req.network));
    etcDone = etcWritten.then(() => undefined, () => undefined); // a failure is thrown where it is awaited, below
    await mkdir(rootfs, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const settings = runtimeSettings(req.config, req.image);
    const cwd = workingDir(settings, req, req.image);
    let layers: string;
    if (req.readOnly) {
      // No writable layer: the image on top (its directories keep their modes and owners, its
      // root's included), over an init layer holding what the image may lack and runc must mount
      // over (as Docker's init layer), and the working directory when the image lacks it.
      await makeInitLayer(paths.init, cwd);
      layers = `lowerdir=${imageMount.mountpoint}:${paths.init}`;
    } else {
      for (const d of [paths.upper, paths.work]) await mkdir(d, { mode: 0o755 });
      // The overlay's root takes its upper directory's mode and owner: give it the image root's.
      const top = await stat(imageMount.mountpoint);
      await chmod(paths.upper, top.mode & 0o7777);
      await chown(paths.upper, top.uid, top.gid);
      layers = `lowerdir=${imageMount.mountpoint},upperdir=${paths.upper},workdir=${paths.work}`;
    }
    const ov = await tool('mount', ['-t', 'overlay', 'overlay', '-o', layers, rootfs]);
    if (ov.code !== 0) throw new ClipError('EIO', `cannot mount the container's overlay on ${rootfs}: ${ov.stderr.trim() || `exit code ${ov.code}`}`, { object: `${req.image} (container ${id})` });
    // The user and groups from the container's own /etc/passwd and /etc/group.
    const proc = await processSettings(settings, { ...req, hostname }, rootfs, req.image);
    if (!req.readOnly) await mkdirInRoot(rootfs, cwd);
    const etcFiles = await etcWritten;
    const spec = runtimeSpec({
      id, rootPath: req.bundleDir ? 'rootfs' : rootfs, readOnly: req.readOnly === true, process: proc, hostname, network: req.network, tty: req.tty === true,
      ...(req.tty === true ? terminalSize() : {}),
      volumes: req.volumes, etcFiles,
      annotations: { 'org.clip.container': id, 'org.clip.image': req.image, 'org.clip.image.manifest-digest': req.manifestDigest },
    });
    await writeFile(join(bundle, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o600 });
    log.debug({ id, rootfs, args: proc.args, user: proc.user, sinceStartMs: Math.round(performance.now()) }, 'run: container prepared');
    return { id, paths, bundle, rootfs, record };
  } catch (err) {
    await etcDone; // not to write into what the teardown removes
    await teardownContainer(req.cacheDir, id, { logger: log }).catch((e: unknown) => log.warn({ err: e, id }, 'run: undoing a failed container failed'));
    throw err;
  }
}

/** The init layer of a read-only container: the mount targets runc needs, and the working directory. */
async function makeInitLayer(init: string, cwd: string): Promise<void> {
  for (const d of ['etc', 'proc', 'sys', 'dev']) await mkdir(join(init, d), { recursive: true, mode: 0o755 });
  for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf']) await writeFile(join(init, f), '', { mode: 0o644 });
  // Under the image: shows only where the image has nothing at that path.
  await mkdir(join(init, ...cwd.split('/').filter((p) => p && p !== '.' && p !== '..')), { recursive: true, mode: 0o755 });
}

async function writeEtcFiles(paths: ContainerPaths, hostname: string, network: NetworkMode): Promise<{ hosts: string; hostname: string; resolvConf: string }> {
  const files = { hosts: join(paths.etc, 'hosts'), hostname: join(paths.etc, 'hostname'), resolvConf: join(paths.etc, 'resolv.conf') };
  const hostFile = (f: string): string => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  };
  const hosts = network === 'host'
    ? hostFile('/etc/hosts')
    : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`;
  await writeFile(files.hosts, hosts, { mode: 0o644 });
  await writeFile(files.hostname, `${hostname}\n`, { mode: 0o644 });
  await writeFile(files.resolvConf, hostFile('/etc/resolv.conf'), { mode: 0o644 });
  return files;
}

/** A finished bundle belongs to its directory, not to the process that made it. */
export async function handOverToBundle(prepared: PreparedContainer, cacheDir: string): Promise<void> {
  const owner: RefOwner = { bundle: prepared.record.bundleDir! };
  await withLock(runPaths(cacheDir).lock, async () => {
    await writeRecord(prepared.paths, { ...prepared.record, owner });
    await writePrivateFile(join(imageMountPaths(cacheDir, prepared.record.manifestDigest).refs, prepared.id), `${JSON.stringify(owner)}\n`);
  });
}

export interface TeardownOptions {
  logger?: Logger;
  /** Keep the writable layer (upper/) and the record, marked kept. */
  keep?: boolean;
  /** The lock is held by the caller. */
  locked?: boolean;
  /** Refuse (EBUSY) rather than detach a busy overlay: for a bundle another runtime may still use. */
  refuseBusy?: boolean;
  /** Keep the image mounted this long (ms) if this was its last container (linger.ts). */
  lingerMs?: number;
}

/**
 * Undo a container: its runc state, its overlay, its directories (but upper/ with keep), its image
 * reference (the last one stops the image mount).
 */
export async function teardownContainer(cacheDir: string, id: string, opts: TeardownOptions = {}): Promise<{ imageUnmounted: boolean }> {
  const log = opts.logger ?? silentLogger;
  const paths = containerPaths(cacheDir, id);
  const record = await readRecord(paths);
  const runcRoot = runPaths(cacheDir).runcRoot;
  // `runc run` removes its state when the container ends: runc is run only when some is left.
  if ((await runcStates(runcRoot)).includes(id)) await tool('runc', ['--root', runcRoot, 'delete', '--force', id]);
  const rootfs = record?.bundleDir ? join(record.bundleDir, 'rootfs') : paths.rootfs;
  await unmountOverlay(rootfs, id, opts.refuseBusy === true, log);
  if (mountedUnder(paths.dir)) throw new ClipError('EIO', 'something is still mounted in the container directory; not removing it', { object: paths.dir });
  if (record?.bundleDir) {
    await rm(join(record.bundleDir, 'config.json'), { force: true });
    await rmdir(rootfs).catch(() => undefined); // empty once unmounted; anything else there is not ours
  }
  if (opts.keep && record) {
    for (const d of [paths.work, paths.rootfs, paths.etc, paths.init, paths.config]) await rm(d, { recursive: true, force: true });
    await writeRecord(paths, { ...record, kept: true });
  } else {
    await rm(paths.dir, { recursive: true, force: true });
  }
  if (!record) return { imageUnmounted: false };
  return { imageUnmounted: await releaseImageMount({ cacheDir, manifestDigest: record.manifestDigest, holder: id, logger: log, locked: opts.locked === true, ...(opts.lingerMs ? { lingerMs: opts.lingerMs } : {}) }) };
}

async function unmountOverlay(rootfs: string, id: string, refuseBusy: boolean, log: Logger): Promise<void> {
  for (let i = 0; i < 8 && mountsAt(rootfs).length > 0; i++) {
    const r = await tool('umount', [rootfs]);
    if (r.code === 0) continue;
    if (refuseBusy) throw new ClipError('EINVAL', `its rootfs is busy (a container still runs on it?): ${r.stderr.trim()}`, { object: rootfs });
    log.info({ id, rootfs, stderr: r.stderr.trim() }, 'run: overlay busy, unmounting lazily');
    await tool('umount', ['-l', rootfs]);
  }
  if (mountsAt(rootfs).length > 0) throw new ClipError('EIO', 'cannot unmount the container overlay', { object: rootfs });
}

export interface SweepResult {
  containers: string[];
  runcStates: string[];
  images: string[];
}

/** Under the lock: tear down what dead owners left (see the module's comment). */
export async function sweepLocked(cacheDir: string, log: Logger = silentLogger): Promise<SweepResult> {
  const run = runPaths(cacheDir);
  const result: SweepResult = { containers: [], runcStates: [], images: [] };
  const ids = (await readdir(run.containers).catch(() => [] as string[])).filter((n) => CONTAINER_ID.test(n));
  const live = new Set<string>();
  for (const id of ids) {
    const record = await readRecord(containerPaths(cacheDir, id));
    if (record && (record.kept === true || ownerAlive(record.owner))) {
      live.add(id);
      continue;
    }
    log.info({ id, image: record?.image }, 'run: cleaning what a dead clip run left');
    try {
      const { imageUnmounted } = await teardownContainer(cacheDir, id, { logger: log, locked: true });
      result.containers.push(id);
      if (imageUnmounted && record) result.images.push(record.manifestDigest);
    } catch (err) {
      log.warn({ err, id }, 'run: cleaning a dead container failed');
      live.add(id);
    }
  }
  // runc state with no live record (its record's directory already gone, say): runc keeps a
  // directory per container under its root, so runc itself is run only when there is one to delete.
  for (const id of await runcStates(run.runcRoot)) {
    if (live.has(id)) continue;
    await tool('runc', ['--root', run.runcRoot, 'delete', '--force', id]);
    result.runcStates.push(id);
  }
  for (const digest of await imageMountDigests(cacheDir)) {
    try {
      if (await stopIfUnused(cacheDir, digest, log)) result.images.push(digest);
    } catch (err) {
      log.warn({ err, digest }, 'run: stopping an unused image mount failed');
    }
  }
  return result;
}

/** The containers runc has state for under `runcRoot` (a directory each), of the ids clip gives. */
async function runcStates(runcRoot: string): Promise<string[]> {
  return (await readdir(runcRoot).catch(() => [] as string[])).filter((n) => CONTAINER_ID.test(n));
}

/** `clip run --cleanup`: the sweep, taking the lock; with `endLingers`, lingering image mounts are stopped too. */
export async function sweep(cacheDir: string, log: Logger = silentLogger, opts: { endLingers?: boolean } = {}): Promise<SweepResult> {
  await ensurePrivateDir(runPaths(cacheDir).root);
  return withLock(runPaths(cacheDir).lock, async () => {
    if (opts.endLingers) {
      for (const digest of await imageMountDigests(cacheDir)) await rm(imageMountPaths(cacheDir, digest).linger, { force: true });
    }
    return sweepLocked(cacheDir, log);
  });
}

/** The container recorded for a bundle directory, if any. */
export async function bundleContainer(cacheDir: string, bundleDir: string): Promise<string | undefined> {
  const ids = (await readdir(runPaths(cacheDir).containers).catch(() => [] as string[])).filter((n) => CONTAINER_ID.test(n));
  for (const id of ids) {
    if ((await readRecord(containerPaths(cacheDir, id)))?.bundleDir === bundleDir) return id;
  }
  return undefined;
}

/** This process's terminal size (from stdout, else stderr), for the container's console. */
function terminalSize(): { consoleSize?: { height: number; width: number } } {
  for (const s of [process.stdout, process.stderr]) {
    if (s.isTTY && s.rows > 0 && s.columns > 0) return { consoleSize: { height: s.rows, width: s.columns } };
  }
  return {};
}
