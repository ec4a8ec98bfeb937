import { mkdir, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** /var/cache/clip for root, $XDG_CACHE_HOME/clip (or ~/.cache/clip) for everyone else. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): string {
  if (uid === 0) return '/var/cache/clip';
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME ?? os.homedir(), '.cache');
  return path.join(base, 'clip');
}

/** Create a directory (and parents) readable by its owner only; an existing one is left as it is. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask; set it exactly on what we created.
  if (created !== undefined) await chmod(dir, 0o700);
}
