/**
 * Layer entries copied from this machine's files: each path is added with its parent directories,
 * and every symlink met on the way (/bin -> usr/bin, libfoo.so.1 -> libfoo.so.1.2.3) is recreated
 * and followed, so the image resolves paths the way the host does.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { BigIntStats } from 'node:fs';
import type { LayerEntry } from '../oci/build/index.js';
import { ClipError } from '../util/errors.js';

const MAX_SYMLINKS = 40; // as the kernel's ELOOP limit
// A directory's mtime changes whenever a package is installed; copying it would force needless rebuilds.
const DIR_MTIME = { sec: 1_700_000_000, nsec: 0 };

function meta(st: BigIntStats): Pick<LayerEntry, 'mode' | 'uid' | 'gid' | 'mtime'> {
  return {
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) },
  };
}

/** Collects entries across layers: a path already placed in an earlier layer is not repeated. */
export class HostTree {
  private readonly placed = new Set<string>();
  private current: LayerEntry[] = [];

  /** Start a new layer; returns the entries of the one before. */
  nextLayer(): LayerEntry[] {
    const done = this.current;
    this.current = [];
    return done;
  }

  /** Entries made up here (config files, the app) rather than copied. */
  addEntry(entry: LayerEntry): void {
    this.placed.add(entry.path);
    this.current.push(entry);
  }

  async addPath(hostPath: string): Promise<void> {
    await this.walk(resolve(hostPath), 0);
  }

  /**
   * A host directory and everything under it (files, symlinks followed as addPath does, directories),
   * in name order, leaving out entries `skip` names (by their path relative to `hostDir`); other
   * file types are left out. Returns the regular files and symlinks added.
   */
  async addTree(hostDir: string, skip: (relPath: string) => boolean = () => false): Promise<string[]> {
    const root = resolve(hostDir);
    await this.addPath(root);
    const added: string[] = [];
    const visit = async (dir: string, rel: string): Promise<void> => {
      for (const name of (await readdir(dir)).sort()) {
        const r = rel ? `${rel}/${name}` : name;
        if (skip(r)) continue;
        const p = join(dir, name);
        const st = await lstat(p);
        if (st.isDirectory()) {
          await this.addPath(p);
          await visit(p, r);
        } else if (st.isFile() || st.isSymbolicLink()) {
          await this.addPath(p);
          added.push(p);
        }
      }
    };
    await visit(root, '');
    return added;
  }

  has(imagePath: string): boolean {
    return this.placed.has(imagePath.replace(/^\/+/, ''));
  }

  private async walk(absPath: string, hops: number): Promise<void> {
    if (hops > MAX_SYMLINKS) throw new ClipError('EINVAL', 'too many levels of symbolic links', { object: absPath });
    const parts = absPath.split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const hostPath = `/${parts.slice(0, i + 1).join('/')}`;
      const imagePath = hostPath.slice(1);
      const st = await lstat(hostPath, { bigint: true }).catch((err: unknown) => {
        throw new ClipError('ENOTFOUND', 'file to copy into the demo image is missing', { object: hostPath, cause: err });
      });
      const m = meta(st);
      const last = i === parts.length - 1;
      if (st.isSymbolicLink()) {
        const target = await readlink(hostPath);
        this.place({ type: 'symlink', path: imagePath, target, ...m });
        const rest = parts.slice(i + 1).join('/');
        const next = resolve(dirname(hostPath), target);
        await this.walk(rest ? `${next}/${rest}` : next, hops + 1);
        return;
      }
      if (st.isDirectory()) this.place({ type: 'dir', path: imagePath, ...m, mtime: DIR_MTIME });
      else if (st.isFile() && last) this.place({ type: 'file', path: imagePath, content: { path: hostPath }, ...m });
      else throw new ClipError('EUNSUPPORTED', 'only directories, files and symlinks are copied into the demo image', { object: hostPath });
    }
  }

  private place(entry: LayerEntry): void {
    if (this.placed.has(entry.path)) return;
    this.placed.add(entry.path);
    this.current.push(entry);
  }
}
