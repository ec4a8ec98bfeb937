/** `clip server status` and `clip server restart`. */
import { resolve } from 'node:path';
import { askServer, unwrap } from '../../server/client.js';
import { serverFiles } from '../../server/paths.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { ClipError } from '../../util/errors.js';
import { formatSize } from '../../util/size.js';
import { printJson } from '../output.js';
import { formatMounts } from './mounts.js';

function cacheDirOf(opts: { cacheDir?: string }): string {
  return resolve(opts.cacheDir ?? defaultCacheDir());
}

export async function serverStatusCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = await askServer(cacheDir, { op: 'status' });
  if (!reply) throw new ClipError('ENOTFOUND', 'no clip server runs for this cache directory (it starts with the first clip mount --background)', { object: cacheDir });
  const st = unwrap(reply);
  if (st.op !== 'status') throw new ClipError('EINVAL', 'the clip server answered another request', { object: cacheDir });
  if (opts.json) {
    printJson(st);
    return;
  }
  process.stdout.write(
    `server pid ${st.pid} (holder pid ${st.holderPid}), ${st.restarts} restart${st.restarts === 1 ? '' : 's'}, RSS ${formatSize(st.rssBytes)}, log ${serverFiles(cacheDir).log}\n${formatMounts(st.mounts)}`,
  );
}

export async function serverRestartCommand(opts: { cacheDir?: string }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = await askServer(cacheDir, { op: 'restart' });
  if (!reply) throw new ClipError('ENOTFOUND', 'no clip server runs for this cache directory', { object: cacheDir });
  const done = unwrap(reply);
  process.stdout.write(`clip: server pid ${done.pid} is being replaced; its mounts stay\n`);
}
