/**
 * Where `extract` builds a tree: a private directory (0700, ours) inside the target, reached only
 * through descriptors, never by name again, and moved into the target at the end.
 *
 * Node has no openat, so a directory is pinned by opening it and reached as /proc/PID/fd/N: the
 * kernel resolves that to the open directory itself, whatever has been renamed or swapped for a
 * symlink on the way to it since. So another user who can write the target (or its parent) can
 * rename what is there, but cannot redirect a single write: inside the staging directory nobody
 * else can write, and the target and the staging directory are reached through their descriptors.
 * What that user can still do, and what is done about it:
 * - replace the target's or the staging directory's name with their own: the tree still goes to
 *   the pinned directories; commit() checks that the target's name still leads to the pinned
 *   directory and fails, saying so, when it does not;
 * - add entries to the target meanwhile: a moved entry replaces one of the same name (rename never
 *   follows a symlink it replaces), a directory cannot replace what is not one (the extraction fails);
 * - change the tree once it is in the target: as with any tool; the target's own owner and mode
 *   are set from the image (root's, usually), which takes it from them.
 */
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../util/errors.js';

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** A file system error (or a ClipError naming nothing) as a ClipError naming `object`, the path as the user knows it; else `err` itself. */
export function fsError(err: unknown, object: string): unknown {
  if (err instanceof ClipError) return err.object === undefined ? new ClipError(err.code, err.message, { object, cause: err }) : err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string' || typeof e.syscall !== 'string') return err;
  const why: Record<string, string> = {
    ENAMETOOLONG: 'name or path too long for the file system',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    EEXIST: 'already exists',
    ENOTDIR: 'a component of the path is not a directory',
  };
  const code = e.code === 'EACCES' || e.code === 'EPERM' ? 'EPERM' : e.code === 'ENOENT' ? 'ENOTFOUND' : 'EIO';
  return new ClipError(code, `${e.syscall}: ${why[e.code] ?? e.code} (${e.code})`, { object, cause: err });
}

function pinnedPath(fh: FileHandle): string {
  return `/proc/${process.pid}/fd/${fh.fd}`;
}

/** A directory held open, reached as `path` whatever is later renamed or swapped on the way to it. */
export interface PinnedDir {
  path: string;
  close(): Promise<void>;
}

/** Pin the directory at `p` (a symlink there is refused). */
export async function pinDir(p: Buffer | string): Promise<PinnedDir> {
  const fh = await open(p, DIR_FLAGS);
  return { path: pinnedPath(fh), close: () => fh.close() };
}

export class Staging {
  private constructor(
    readonly target: string,
    private readonly targetDir: FileHandle,
    private readonly stage: FileHandle,
    private readonly stageName: string,
    private readonly madeTarget: boolean,
  ) {}

  /** The target directory itself (pinned): its own metadata is set through `${targetPath}/.`. */
  get targetPath(): string {
    return pinnedPath(this.targetDir);
  }

  /** The staging directory (pinned): the tree is built under it. */
  get path(): string {
    return pinnedPath(this.stage);
  }

  /**
   * Pin `target` (made 0700 when missing; else an empty directory, not a symlink to one) and make
   * the staging directory in it.
   */
  static async create(target: string): Promise<Staging> {
    let madeTarget = false;
    try {
      await mkdir(target, { mode: 0o700 });
      madeTarget = true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ClipError('ENOTFOUND', 'cannot extract here: the parent directory does not exist', { object: path.dirname(target) });
      if (code !== 'EEXIST') throw fsError(err, target);
    }
    let dir: FileHandle;
    try {
      dir = await open(target, DIR_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw new ClipError('EINVAL', 'extraction target exists and is not a directory', { object: target });
      throw fsError(err, target);
    }
    try {
      const st = await dir.stat();
      // One we just made is ours and private; anything else there now was put by someone else.
      if (madeTarget && (st.uid !== process.geteuid?.() || (st.mode & 0o777) !== 0o700)) {
        throw new ClipError('EUNSAFE', 'the directory just made was replaced by someone else', { object: target });
      }
      await access(pinnedPath(dir), target);
      if ((await readdir(pinnedPath(dir))).length > 0) throw new ClipError('EINVAL', 'extraction target is not empty', { object: target });
      const made = await mkdtemp(`${pinnedPath(dir)}/.clip-extract-`);
      const stageName = path.basename(made);
      const stage = await open(made, DIR_FLAGS);
      const sst = await stage.stat();
      if (sst.uid !== process.geteuid?.() || (sst.mode & 0o777) !== 0o700) {
        await stage.close();
        throw new ClipError('EUNSAFE', 'the staging directory just made was replaced by someone else', { object: target });
      }
      return new Staging(target, dir, stage, stageName, madeTarget);
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  /** Move the staged tree's top-level entries into the target, and check the target is still where it was. */
  async commit(): Promise<void> {
    const stage = this.path;
    const into = this.targetPath;
    for (const name of await readdir(stage, { encoding: 'buffer' })) {
      try {
        await rename(Buffer.concat([Buffer.from(`${stage}/`), name]), Buffer.concat([Buffer.from(`${into}/`), name]));
      } catch (err) {
        throw fsError(err, `${this.target}/${name.toString('utf8')}`);
      }
    }
    await rmdir(`${into}/${this.stageName}`).catch(() => undefined); // ours unless renamed by someone else; then theirs to keep
    const [pinned, named] = await Promise.all([this.targetDir.stat(), lstat(this.target).catch(() => undefined)]);
    if (!named || named.dev !== pinned.dev || named.ino !== pinned.ino) {
      throw new ClipError('EUNSAFE', 'the target was moved or replaced during the extraction (someone else can write its parent); the tree is in the directory clip pinned, not at this path', { object: this.target });
    }
  }

  /** After a failure: remove what was staged (through the pin), and the target when this made it. */
  async discard(): Promise<void> {
    const stage = this.path;
    for (const name of await readdir(stage, { encoding: 'buffer' }).catch(() => [])) {
      await removeTree(Buffer.concat([Buffer.from(`${stage}/`), name])).catch(() => undefined);
    }
    await rmdir(`${this.targetPath}/${this.stageName}`).catch(() => undefined);
    if (this.madeTarget) await rmdir(this.target).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.stage.close();
    await this.targetDir.close();
  }
}

/** Directories reached as /proc/PID/fd/N need /proc. */
async function access(pinned: string, target: string): Promise<void> {
  try {
    await lstat(`${pinned}/.`);
  } catch {
    throw new ClipError('EUNSUPPORTED', 'extract needs /proc mounted (it reaches the directories it writes through /proc/PID/fd)', { object: target });
  }
}

/** Remove a tree of byte-string names (node's rm takes text paths), never following a symlink. */
async function removeTree(p: Buffer): Promise<void> {
  const st = await lstat(p);
  if (!st.isDirectory()) return unlink(p);
  await chmod(p, 0o700); // an image's directory may be mode 0 (staged, so ours)
  for (const name of await readdir(p, { encoding: 'buffer' })) await removeTree(Buffer.concat([p, Buffer.from('/'), name]));
  await rmdir(p);
}
