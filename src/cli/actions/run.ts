/**
 * The actions of `clip run` and `clip bundle`: options checked before any work, the image opened
 * (indexed with a progress display when it has no index), then src/run does the rest.
 */
import { realpath, readdir, mkdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { MountConfig } from '../../mount/serve.js';
import { defaultCacheDir, ensurePrivateDir } from '../../storage/cache-dir.js';
import { formatReference, parseReference } from '../../oci/reference.js';
import { ClipError } from '../../util/errors.js';
import { printable } from '../../util/printable.js';
import type { ContainerRequest, Volume } from '../../run/index.js';
import { envArgs } from '../../run/image-config.js';
import { commandLogger } from '../logger.js';
import { storageSettingsOf } from '../read-options.js';
import { parseLinger, parseNetwork, parseVolume, type ContainerCommandOptions, type RunCommandOptions } from '../commands/run.js';
import type { BundleCommandOptions } from '../commands/bundle.js';

function requireRunRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new ClipError('EPERM', `${what} needs root (it mounts the image and an overlay, and runs runc)`);
}

/** Everything a container request needs from the options, checked before any work. */
export async function containerRequest(image: string, command: string[], opts: ContainerCommandOptions, mountExtra: Pick<MountConfig, 'profile'> = {}): Promise<{ req: ContainerRequest; close: () => Promise<void> }> {
  const logger = commandLogger(opts.logLevel, opts.logFormat);
  const network = parseNetwork(opts.network);
  const volumeArgs = (opts.volume ?? []).map(parseVolume);
  const env = envArgs(opts.env ?? []);
  const storage = storageSettingsOf(opts);
  const volumes: Volume[] = [];
  for (const v of volumeArgs) {
    const source = await realpath(v.host).catch((err: unknown) => {
      throw new ClipError('ENOTFOUND', 'volume source does not exist on this machine', { object: v.host, cause: err });
    });
    volumes.push({ source, destination: v.container, readOnly: v.readOnly });
  }
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  const refImage = image.startsWith('oci:') && !image.startsWith('oci:/') ? `oci:${resolve(image.slice(4))}` : image;
  const base = {
    cacheDir, image, network, volumes, env,
    ...(command.length > 0 ? { command } : {}),
    ...(opts.entrypoint !== undefined ? { entrypoint: opts.entrypoint } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.workdir !== undefined ? { workdir: opts.workdir } : {}),
    ...(opts.tty ? { tty: true } : {}),
    ...(opts.readOnly ? { readOnly: true } : {}),
    logger,
  };
  const mountOpts = {
    ...storage,
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(opts.discover === false ? { discover: false } : {}),
    ...(opts.insecureRegistry?.length ? { insecureRegistry: opts.insecureRegistry } : {}),
    logLevel: 'info',
    ...mountExtra,
  };
  const joined = await servedImage(image, refImage, cacheDir, opts);
  if (joined) {
    logger.debug({ manifest: joined.manifestDigest }, 'run: the image is mounted already; its index is not loaded here');
    const mount = { image: pinnedTo(refImage, joined.manifestDigest), ...mountOpts };
    return { req: { ...base, manifestDigest: joined.manifestDigest, config: joined.config, mount }, close: async () => undefined };
  }
  // The code that starts the image mount loads while the registry answers, not after.
  void import('../../server/background.js').catch(() => undefined);
  const { openForCommand } = await import('../image-arg.js');
  const { img } = await openForCommand(image, { ...opts, cacheDir });
  try {
    // An image reference is mounted as a reference (the server finds the index cached now): an
    // index file names the registry its publisher used, which need not be the one asked for here.
    const mountImage = img.origin === 'file' && img.indexFile ? resolve(img.indexFile) : refImage;
    // What was resolved here is handed to the server, which then asks the registry nothing before
    // the mount serves (the blobs are still read from the location reached here).
    const { handoffOf } = await import('../../mount/open-image.js'); // loaded already by openForCommand; a warm run never needs it
    const resolved = handoffOf(img);
    const mount: Omit<MountConfig, 'mountpoint' | 'cacheDir'> = { image: mountImage, ...(resolved ? { resolved } : {}), ...mountOpts };
    const req: ContainerRequest = { ...base, manifestDigest: img.index.image.manifestDigest, config: Buffer.from(img.index.config), mount };
    return { req, close: () => img.close() };
  } catch (err) {
    await img.close();
    throw err;
  }
}

/**
 * A warm start: an image mount serving in this cache directory that a run of the same name started
 * or joined (a lingering one, say) gives its manifest digest and config (src/run/image-names.ts):
 * the name is not resolved again, nor the index loaded and checked here (the server holds it).
 * Index files and layout directories given as paths take the usual path.
 */
/**
 * A registry reference pinned to the manifest a served mount has: should that mount stop before
 * this run takes it, the server mounts the same image again, not what the tag names by then.
 */
function pinnedTo(ref: string, manifestDigest: string): string {
  try {
    const parsed = parseReference(ref);
    return parsed.kind === 'registry' ? formatReference({ ...parsed, digest: manifestDigest }) : ref;
  } catch {
    return ref;
  }
}

async function servedImage(image: string, refImage: string, cacheDir: string, opts: ContainerCommandOptions): Promise<{ manifestDigest: string; config: Buffer } | undefined> {
  if (await stat(image).then(() => true, () => false)) return undefined;
  const { servedImageNamed } = await import('../../run/index.js');
  return servedImageNamed(cacheDir, refImage, opts.platform);
}

export async function runCommand(image: string | undefined, command: string[], opts: RunCommandOptions): Promise<void> {
  requireRunRoot('clip run');
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  if (opts.cleanup) {
    if (image) throw new ClipError('EINVAL', '--cleanup takes no image');
    const { sweep } = await import('../../run/index.js');
    const r = await sweep(cacheDir, commandLogger(opts.logLevel, opts.logFormat), { endLingers: true });
    process.stdout.write(`clip: cleaned ${r.containers.length} container(s), ${r.runcStates.length} runc state(s), ${r.images.length} image mount(s)\n`);
    return;
  }
  if (!image) throw new ClipError('EINVAL', 'clip run needs an IMAGE (or --cleanup)');
  if (opts.keep && opts.readOnly) throw new ClipError('EINVAL', '--keep keeps the writable layer, and --read-only makes none');
  if (opts.tty && !process.stdin.isTTY) throw new ClipError('EINVAL', '-t needs a terminal on stdin (this one is not)');
  parseNetwork(opts.network);
  (opts.volume ?? []).forEach(parseVolume);
  const lingerMs = parseLinger(opts.linger);
  const serverUp = startServerEarly(cacheDir);
  const runModule = import('../../run/index.js'); // needed next: loads while the image is resolved
  runModule.catch(() => undefined); // a failure is thrown where it is awaited
  const { req, close } = await containerRequest(image, command, opts);
  await close();
  // Phase times (ms since this process started) for --log-level debug: where a start's time goes.
  req.logger?.debug({ sinceStartMs: Math.round(performance.now()) }, 'run: image resolved');
  await serverUp;
  req.logger?.debug({ sinceStartMs: Math.round(performance.now()) }, 'run: the node\'s server is up');
  const { runContainer } = await runModule;
  const result = await runContainer({ ...req, ...(opts.keep ? { keep: true } : {}), ...(lingerMs > 0 ? { lingerMs } : {}) });
  // runc has printed its reason already: this line names the image and container it is about.
  if (result.startError) process.stderr.write(`clip: ${printable(`${image} (container ${result.id})`)}: the container did not start (exit ${result.code})\n`);
  if (result.kept) process.stderr.write(`clip: kept the writable layer of container ${result.id}: ${result.kept}\n`);
  process.exitCode = result.code;
}

/**
 * Start the node's server (two Node start-ups when none runs) while this process resolves the image
 * and loads its index, rather than after: the image mount then finds it answering. A failure here
 * is left to the mount, which starts the server itself and reports it. When its holder lives the
 * server is left alone (no status round trip on a warm run's path).
 */
async function startServerEarly(cacheDir: string): Promise<void> {
  try {
    await ensurePrivateDir(cacheDir); // a cache directory clip must refuse starts nothing
    // A server that runs (a warm run's, whose image it serves) is not asked anything here: the
    // mount request, if any, reaches it (or starts it again) anyway.
    const { liveHolder, serverFiles } = await import('../../server/paths.js');
    if ((liveHolder(serverFiles(cacheDir).lock) ?? 0) > 0) return;
    const { ensureServer } = await import('../../server/client.js');
    await ensureServer(cacheDir);
  } catch {
    // reported by the mount, if it matters
  }
}

export async function bundleCommand(image: string | undefined, dir: string | undefined, command: string[], opts: BundleCommandOptions): Promise<void> {
  requireRunRoot('clip bundle');
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  if (opts.remove) {
    // `clip bundle --remove DIR`: DIR is the first argument.
    const target = image;
    if (!target || dir || command.length > 0) throw new ClipError('EINVAL', 'clip bundle --remove takes one argument, the bundle directory');
    const bundleDir = await realpath(target).catch(() => resolve(target));
    const { bundleContainer, teardownContainer } = await import('../../run/index.js');
    const id = await bundleContainer(cacheDir, bundleDir);
    if (!id) throw new ClipError('ENOTFOUND', `not a bundle clip made (with this --cache-dir, ${cacheDir})`, { object: bundleDir });
    await teardownContainer(cacheDir, id, { logger: commandLogger(opts.logLevel, opts.logFormat), refuseBusy: true });
    process.stdout.write(`clip: removed the bundle ${bundleDir}\n`);
    return;
  }
  if (!image || !dir) throw new ClipError('EINVAL', 'clip bundle needs an IMAGE and a DIR (or --remove DIR)');
  parseNetwork(opts.network);
  (opts.volume ?? []).forEach(parseVolume);
  const bundleDir = await usableBundleDir(dir);
  const { req, close } = await containerRequest(image, command, opts);
  await close();
  const { prepareContainer, handOverToBundle } = await import('../../run/index.js');
  const prepared = await prepareContainer({ ...req, bundleDir });
  await handOverToBundle(prepared, cacheDir);
  process.stdout.write(`${bundleDir}\n`);
  process.stderr.write(`clip: bundle of ${printable(image)} in ${bundleDir} (config.json, rootfs); run it with e.g. runc run -b ${bundleDir} ${prepared.id}; undo with clip bundle --remove ${bundleDir}\n`);
}

/** The bundle directory, absolute and real: made if missing, else it must be an empty directory. */
async function usableBundleDir(dir: string): Promise<string> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => undefined);
  if (!st) await mkdir(abs, { recursive: true, mode: 0o755 });
  else if (!st.isDirectory()) throw new ClipError('EINVAL', 'is not a directory', { object: abs });
  else if ((await readdir(abs)).length > 0) throw new ClipError('EINVAL', 'is not empty (a bundle directory must be new or empty)', { object: abs });
  return realpath(abs);
}
