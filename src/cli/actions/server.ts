/** `clip server status` and `clip server restart`. */
import { resolve } from 'node:path';
import type { ProcessMemory } from '../../mount/process-metrics.js';
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
    `server pid ${st.pid} (holder pid ${st.holderPid}), ${st.restarts} restart${st.restarts === 1 ? '' : 's'}, RSS ${formatSize(st.rssBytes)}, log ${serverFiles(cacheDir).log}\n${memoryLine(st.memory)}\n${formatMounts(st.mounts)}`,
  );
}

/** The server's memory, split: its own (anon) and the node binary's pages (file), then what V8 and buffers hold. */
function memoryLine(m: Partial<ProcessMemory>): string {
  const f = (n: number | undefined): string => (n === undefined ? '?' : formatSize(n));
  return `memory: anon ${f(m.anon)}, file ${f(m.file)}; V8 heap ${f(m.heapUsed)} used of ${f(m.heapTotal)}, array buffers ${f(m.arrayBuffers)} (indexes included), kept spans ${f(m.keptSpans)}`;
}

export async function serverRestartCommand(opts: { cacheDir?: string }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = await askServer(cacheDir, { op: 'restart' });
  if (!reply) throw new ClipError('ENOTFOUND', 'no clip server runs for this cache directory', { object: cacheDir });
  const done = unwrap(reply);
  process.stdout.write(`clip: server pid ${done.pid} is being replaced; its mounts stay\n`);
}
