/** `clip mounts`: clip's running mounts, from the status each one keeps under CACHE_DIR/mounts/. */
import { resolve } from 'node:path';
import { listMounts, type MountStatus } from '../../mount/status.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { printable } from '../../util/printable.js';
import { formatSize } from '../../util/size.js';
import { formatTable, printJson } from '../output.js';

function uptime(since: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(since)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

/**
 * RSS is the serving process's (the node server's, shared by its mounts); MOUNT MEM what the mount
 * holds of it on its own: its loaded index (shared with other mounts of the same image) and the
 * windows of the learned checkpoints its source keeps.
 */
export function formatMounts(live: MountStatus[]): string {
  if (!live.length) return 'no clip mounts running\n';
  const rows = live.map((m) => [
    printable(m.mountpoint), printable(m.image), String(m.pid), uptime(m.startedAt), formatSize(m.rssBytes),
    m.memory ? formatSize(m.memory.indexBytes + (m.memory.learnedWindowBytes ?? 0)) : '-',
    formatSize(m.bytes.disk), formatSize(m.bytes.remote), formatSize(m.bytes.source), m.index, String(m.restarts ?? 0),
  ]);
  return `${formatTable(['MOUNTPOINT', 'IMAGE', 'PID', 'UP', 'RSS', 'MOUNT MEM', 'FROM DISK', 'FROM REMOTE', 'FROM SOURCE', 'INDEX', 'RESTARTS'], rows)}\n`;
}

export async function mountsCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const { live } = await listMounts(resolve(opts.cacheDir ?? defaultCacheDir()));
  if (opts.json) printJson(live);
  else process.stdout.write(formatMounts(live));
}
