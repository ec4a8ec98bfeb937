/**
 * Paths inside a container's root, resolved as the container would see them: every symlink met is
 * followed inside the root (an absolute target starts again at the root, ".." stops at it), so a
 * link in an image can never make clip, running as root on the host, read or create a host file.
 */
import { lstat, mkdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipError } from '../util/errors.js';

const MAX_LINKS = 40;

/**
 * The host path of `path` inside `root`, symlinks resolved within the root. A missing component
 * ends the walk: the rest is appended as it is (and `missing` says from where).
 */
export async function resolveInRoot(root: string, path: string): Promise<{ host: string; missing: string[]; parent: string }> {
  const todo = path.split('/').filter((p) => p && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    const st = await lstat(host).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!st) return { host: join(root, ...done, part, ...todo), missing: [part, ...todo], parent: join(root, ...done) };
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new ClipError('EUNSAFE', 'too many levels of symbolic links', { object: path });
      const target = await readlink(host);
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...target.split('/').filter((p) => p && p !== '.'));
      continue;
    }
    done.push(part);
  }
  return { host: join(root, ...done), missing: [], parent: join(root, ...done.slice(0, -1)) };
}

/** A file of the root, or undefined when it does not exist. */
export async function readInRoot(root: string, path: string): Promise<string | undefined> {
  const { host, missing } = await resolveInRoot(root, path);
  if (missing.length > 0) return undefined;
  return readFile(host, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'EISDIR') return undefined;
    throw err;
  });
}

/** mkdir -p inside the root (root-owned, 0755), as Docker creates a WorkingDir the image lacks. */
export async function mkdirInRoot(root: string, path: string): Promise<void> {
  for (let i = 0; i <= path.split('/').length + MAX_LINKS; i++) {
    const { host, missing, parent } = await resolveInRoot(root, path);
    if (missing.length === 0) {
      if (!(await lstat(host)).isDirectory()) throw new ClipError('EINVAL', 'is not a directory in the container', { object: path });
      return;
    }
    // One component at a time, resolved again each time: never a host path through a link.
    await mkdir(join(parent, missing[0]!), { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  throw new ClipError('EUNSAFE', 'cannot create it: too many levels of symbolic links', { object: path });
}
