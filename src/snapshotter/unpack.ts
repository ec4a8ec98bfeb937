/**
 * A remote layer made into an ordinary snapshot directory: its blob downloaded (verified against its
 * digest as it streams) and unpacked by GNU tar (owners, modes, devices, xattrs), then its OCI
 * whiteouts turned into overlayfs's (a `.wh.NAME` file becomes a 0/0 character device NAME, a
 * `.wh..wh..opq` marker the directory's trusted.overlay.opaque=y). Needed only when a snapshot
 * stands on a remote layer that is not its image's last: clip mounts whole images, so such a layer
 * has no view of its own.
 */
import { spawn } from 'node:child_process';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openImage } from '../oci/index.js';
import type { RemoteLayer } from './store.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

function run(cmd: string, args: string[], stdin?: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('error', reject);
    const exited = new Promise<void>((res, rej) => child.on('close', (code) => (code === 0 ? res() : rej(new Error(`${cmd} failed (${code}): ${err.trim()}`)))));
    if (stdin) {
      pipeline(stdin, child.stdin!).then(() => exited, (e: unknown) => {
        child.kill('SIGKILL');
        throw e;
      }).then(resolve, reject);
    } else exited.then(resolve, reject);
  });
}

async function convertWhiteouts(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (name === OPAQUE) {
      await rm(path);
      await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', dir]);
    } else if (name.startsWith(WHITEOUT)) {
      await rm(path);
      await run('mknod', [join(dir, name.slice(WHITEOUT.length)), 'c', '0', '0']);
    } else if ((await lstat(path)).isDirectory()) {
      await convertWhiteouts(path);
    }
  }
}

/** Unpack `layer` into `target` (which must not exist): through `target`.tmp, renamed when whole. */
export async function unpackRemoteLayer(layer: RemoteLayer, target: string, insecureRegistries: string[]): Promise<void> {
  const source = openImage(`${layer.location}@${layer.manifest}`, { insecureRegistries });
  const tmp = `${target}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o755 });
  try {
    const image = await source.resolve();
    const l = image.layers[layer.position];
    if (!l) throw new Error(`${layer.location}@${layer.manifest} has no layer ${layer.position + 1}`);
    const decompress = l.compression === 'gzip' ? ['-z'] : l.compression === 'zstd' ? ['--zstd'] : [];
    const blob = await source.openBlob(l.descriptor);
    await run('tar', ['-x', ...decompress, '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', tmp, '-f', '-'], blob);
    await convertWhiteouts(tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    await source.close?.();
  }
}
