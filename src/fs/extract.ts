/**
 * Materialise an image's merged root filesystem in a directory, as `umoci unpack` does: every
 * type (devices and FIFOs through mknod/mkfifo, which node lacks), hardlink groups as one inode,
 * ownership, modes with setuid bits, xattrs and nanosecond mtimes.
 *
 * Nothing is ever written outside the target, whatever the index holds or other users do meanwhile.
 * The target must be empty; the tree is built in a private staging directory inside it, reached
 * through a descriptor (staging.ts), so nobody else can swap a directory on a path for a symlink,
 * and moved into the target at the end. Inside it, every directory on a path is one this run made
 * with mkdir (which never follows a symlink), every other object is created exclusively
 * (O_CREAT|O_EXCL, mknod, symlink, link: none follows a symlink in its last component), names are
 * refused when they hold "/" or are "." or "..", and metadata calls are the ones that act on a
 * symlink itself (lchown, lutimes, no chmod of symlinks). A failed extraction removes what it staged.
 * Names keep their bytes: paths here are byte strings (see archive/tar-path.ts) made into Buffers.
 */
import { execFile } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import { chmod, lchown, link, lutimes, mkdir, mkdtemp, open, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { pathBytes, shownBytes, shownPath } from '../archive/tar-path.js';
import type { ImageIndex } from '../index/reader.js';
import { entryTypeOf, type Attr } from '../index/types.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { fsError, pinDir, Staging, type PinnedDir } from './staging.js';

const execFileP = promisify(execFile);

/** The uncompressed bytes [offset, offset + size) of one of the index's layers. */
export type LayerReader = (layer: number, offset: number, size: number, signal?: AbortSignal) => AsyncIterable<Uint8Array>;

export interface ExtractOptions {
  /** Set owners (lchown) and make devices; default: when running as root (as umoci without --rootless). */
  sameOwner?: boolean;
  /** Files written at once (default 4). */
  concurrency?: number;
  logger?: Logger;
  /** Content bytes written since the last call. */
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

export interface ExtractSummary {
  dirs: number;
  files: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  devices: number;
  bytes: number;
  xattrs: number;
  /** What could not be made (devices without root), one line each. */
  skipped: string[];
}

interface FileJob {
  rel: string;
  layer: number;
  offset: number;
  size: number;
}

interface MetaJob {
  rel: string;
  attr: Attr;
  ino: number;
  depth: number;
}

const SLASH = 0x2f;
const DOT = 0x2e;

/** A directory entry name that is a single, safe path component, as a byte string; otherwise EUNSAFE. */
export function safeName(name: Buffer, parent: string): string {
  const bad = name.length === 0 || name.includes(SLASH) || name.includes(0)
    || (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
  if (bad) throw new ClipError('EUNSAFE', `refusing entry name ${JSON.stringify(shownBytes(name))}`, { object: parent });
  return name.toString('latin1');
}

/** Whether node's lutimes (seconds as a double, truncated to ns by libuv) sets exactly these. */
function nodeTimeExact(sec: number, nsec: number): boolean {
  const t = sec + nsec / 1e9;
  const s = Math.trunc(t);
  return s === sec && Math.trunc((t - s) * 1e9) === nsec;
}

/** Extract the whole tree of `index` into `dir` (missing, or an empty directory), reading file content with `read`. */
export async function extractTree(index: ImageIndex, dir: string, read: LayerReader, opts: ExtractOptions = {}): Promise<ExtractSummary> {
  const root = path.resolve(dir);
  const staging = await Staging.create(root);
  try {
    return await extractStaged(index, staging, read, opts);
  } catch (err) {
    await staging.discard();
    throw err;
  } finally {
    await staging.close();
  }
}

async function extractStaged(index: ImageIndex, staging: Staging, read: LayerReader, opts: ExtractOptions): Promise<ExtractSummary> {
  const log = opts.logger ?? silentLogger;
  const root = staging.target;
  const sameOwner = opts.sameOwner ?? process.getuid?.() === 0;
  const signal = opts.signal;
  const summary: ExtractSummary = { dirs: 0, files: 0, symlinks: 0, hardlinks: 0, fifos: 0, devices: 0, bytes: 0, xattrs: 0, skipped: [] };
  // Entries under the staging directory, the root as the target itself: both through their pins.
  const stageBytes = Buffer.from(staging.path);
  const abs = (rel: string): Buffer => (rel === '' ? Buffer.from(`${staging.targetPath}/.`) : Buffer.concat([stageBytes, pathBytes(`/${rel}`)]));
  const shown = (rel: string): string => (rel === '' ? root : `${root}/${shownPath(rel)}`);
  /** An fs call on one entry: its errors name the entry where the user will look for it. */
  const on = async <T>(rel: string, op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      throw fsError(err, shown(rel));
    }
  };
  const special = new SpecialFiles(staging.path);
  const checkAbort = (): void => {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new ClipError('EINVAL', 'extraction cancelled', { object: root });
  };

  // Pass 1, parents before children: directories, symlinks, special files; files and links listed.
  const firstPath = new Map<number, string>();
  const files: FileJob[] = [];
  const links: Array<[string, string]> = [];
  const meta: MetaJob[] = [];
  const dirs: MetaJob[] = [{ rel: '', attr: index.getattr(index.rootIno), ino: index.rootIno, depth: 0 }];
  const stack: Array<{ ino: number; rel: string; depth: number }> = [{ ino: index.rootIno, rel: '', depth: 0 }];
  while (stack.length > 0) {
    checkAbort();
    const { ino: dirIno, rel: dirRel, depth } = stack.pop()!;
    const children: Array<[string, number]> = [];
    index.readdir(dirIno, 0, (name, child) => {
      children.push([safeName(name, `/${shownPath(dirRel)}`), child]);
    });
    for (const [name, ino] of children) {
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      const attr = index.getattr(ino);
      const type = entryTypeOf(attr.mode);
      if (type === 'dir') {
        await on(rel, () => mkdir(abs(rel), { mode: 0o700 }));
        summary.dirs++;
        dirs.push({ rel, attr, ino, depth: depth + 1 });
        stack.push({ ino, rel, depth: depth + 1 });
        continue;
      }
      const first = firstPath.get(ino);
      if (first !== undefined) {
        links.push([first, rel]);
        continue;
      }
      firstPath.set(ino, rel);
      if (type === 'file') {
        const loc = index.dataLocation(ino)!;
        files.push({ rel, layer: loc.layer, offset: loc.offset, size: loc.size });
        summary.files++;
      } else if (type === 'symlink') {
        await on(rel, () => symlink(index.readlink(ino), abs(rel)));
        summary.symlinks++;
      } else if (type === 'fifo') {
        await on(rel, () => special.make(abs(rel), ['p']));
        summary.fifos++;
      } else if (sameOwner) {
        await on(rel, () => special.make(abs(rel), [type === 'char' ? 'c' : 'b', String(attr.rdevMajor), String(attr.rdevMinor)]));
        summary.devices++;
      } else {
        summary.skipped.push(`/${shownPath(rel)}: ${type} device ${attr.rdevMajor}:${attr.rdevMinor} (needs root)`);
        firstPath.delete(ino);
        continue;
      }
      meta.push({ rel, attr, ino, depth: depth + 1 });
    }
  }

  // Pass 2: file content in layer order (sequential reads of each layer), a few files at a time.
  files.sort((a, b) => a.layer - b.layer || a.offset - b.offset);
  let next = 0;
  const writer = async (): Promise<void> => {
    while (next < files.length) {
      checkAbort();
      const job = files[next++]!;
      let n: number;
      try {
        n = await on(job.rel, () => writeFile(abs(job.rel), shown(job.rel), job, read, opts, signal));
      } catch (err) {
        next = files.length; // the other writers stop after their current file
        throw err;
      }
      summary.bytes += n; // not `+= await`: that would read the total before the await and lose concurrent writers' bytes
    }
  };
  await special.done();
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 4, files.length)) }, writer));

  // Pass 3: hardlinks to the first name of each group (linkat does not follow a symlink source).
  for (const [target, rel] of links) {
    await on(rel, () => link(abs(target), abs(rel)));
    summary.hardlinks++;
  }

  // Pass 4: metadata. chown before chmod (chown clears setuid bits), xattrs after chown (it
  // clears security.capability), directories last and deepest first (filling them moved their mtimes).
  const precise: Array<[Buffer, number, number]> = [];
  const xattrs: Xattr[] = [];
  const apply = (job: MetaJob, p = abs(job.rel)): Promise<void> => on(job.rel, async () => {
    const { attr } = job;
    const isLink = entryTypeOf(attr.mode) === 'symlink';
    if (sameOwner) await lchown(p, attr.uid, attr.gid);
    if (!isLink) await chmod(p, attr.mode & 0o7777);
    for (const name of index.listxattr(job.ino)) xattrs.push([p, name, Buffer.from(index.getxattr(job.ino, name)!), shown(job.rel)]);
    // A root with no "./" entry in any layer has time 0 in the index: leave the target's own time.
    if (job.rel === '' && attr.mtimeSec === 0 && attr.mtimeNsec === 0) return;
    const t = attr.mtimeSec + attr.mtimeNsec / 1e9;
    await lutimes(p, t, t);
    if (!nodeTimeExact(attr.mtimeSec, attr.mtimeNsec)) precise.push([p, attr.mtimeSec, attr.mtimeNsec]);
  });
  for (const job of meta) await apply(job);
  dirs.sort((a, b) => b.depth - a.depth);
  // The root and the top-level directories are set once moved into the target: moving a directory
  // needs write permission on it (its ".." changes), which an image's mode (0555 /proc) may deny
  // a user who is not root. They are pinned first, so the target's names are never followed.
  const rootJob = dirs.pop()!;
  const top = dirs.filter((d) => d.depth === 1);
  for (const job of dirs) if (job.depth > 1) await apply(job);
  await setXattrsAndTimes(xattrs, precise, root, log);
  const staged = xattrs.length;
  xattrs.length = 0;
  precise.length = 0;
  const pins: PinnedDir[] = [];
  try {
    for (const job of top) pins.push(await on(job.rel, () => pinDir(abs(job.rel))));
    await staging.commit();
    for (const [k, job] of top.entries()) await apply(job, Buffer.from(`${pins[k]!.path}/.`));
    await apply(rootJob);
    await setXattrsAndTimes(xattrs, precise, root, log);
  } finally {
    for (const pin of pins) await pin.close();
  }
  summary.xattrs = staged + xattrs.length;
  return summary;
}

async function writeFile(p: Buffer, shown: string, job: FileJob, read: LayerReader, opts: ExtractOptions, signal: AbortSignal | undefined): Promise<number> {
  const fh = await open(p, 'wx', 0o600);
  let written = 0;
  try {
    for await (const piece of job.size > 0 ? read(job.layer, job.offset, job.size, signal) : []) {
      for (let off = 0; off < piece.length; ) off += (await fh.write(piece, off, piece.length - off)).bytesWritten;
      written += piece.length;
      opts.onBytes?.(piece.length);
    }
  } finally {
    await fh.close();
  }
  if (written !== job.size) throw new ClipError('ECORRUPT', `wrote ${written} bytes of ${job.size}`, { object: shown });
  return written;
}

/**
 * Node has no setxattr and no nanosecond utimes: one python3 process sets both, for every path at
 * once (paths and values travel as hex so any byte survives), acting on symlinks themselves.
 */
/** Path (a staging one), name, value, and the path as the user will know it, for errors. */
type Xattr = [Buffer, string, Buffer, string];

const XATTR_PY = String.raw`
import json, os, sys
job = json.load(sys.stdin)
for p, name, value, shown in job['xattrs']:
    try:
        os.setxattr(bytes.fromhex(p), name, bytes.fromhex(value), follow_symlinks=False)
    except OSError as e:
        sys.exit('setxattr %s on %s: %s' % (name, shown, e.strerror))
for p, sec, nsec in job['times']:
    t = sec * 1000000000 + nsec
    os.utime(bytes.fromhex(p), ns=(t, t), follow_symlinks=False)
`;

/** `target` names the extraction in errors (the paths here are staging ones). */
async function setXattrsAndTimes(xattrs: Xattr[], times: Array<[Buffer, number, number]>, target: string, log: Logger): Promise<void> {
  if (xattrs.length === 0 && times.length === 0) return;
  const hex = (p: Buffer): string => p.toString('hex');
  const job = JSON.stringify({
    xattrs: xattrs.map(([p, name, value, shown]) => [hex(p), name, value.toString('hex'), shown]),
    times: times.map(([p, sec, nsec]) => [hex(p), sec, nsec]),
  });
  const child = execFile('python3', ['-c', XATTR_PY], { maxBuffer: 1024 * 1024 });
  const done = new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT'
        ? new ClipError('EUNSUPPORTED', 'setting extended attributes and nanosecond times needs python3 (node has no setxattr)', { object: target })
        : err);
    });
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new ClipError('EPERM', `could not set extended attributes: ${stderr.trim()}`, { object: target }));
    });
  });
  child.stdin?.end(job);
  await done;
  log.debug({ xattrs: xattrs.length, times: times.length }, 'xattrs and precise times set');
}

/**
 * FIFOs and devices, which node cannot make: mkfifo(1) and mknod(1) take their path as an argument,
 * which cannot carry a name that is not UTF-8, so those are made under a temporary ASCII name in a
 * directory of our own inside the target and renamed into place (a rename within one filesystem).
 */
class SpecialFiles {
  private scratch: Promise<string> | undefined;
  private made = 0;

  constructor(private readonly root: string) {}

  async make(target: Buffer, spec: string[]): Promise<void> {
    const [kind, ...dev] = spec;
    const name = kind === 'p' ? 'mkfifo' : 'mknod';
    const tool = (at: string): Promise<unknown> => execFileP(name, kind === 'p' ? ['--', at] : ['--', at, kind!, ...dev]).catch((err: { code?: unknown; stderr?: string }) => {
      if (typeof err.code !== 'number') throw err; // could not run: an errno error, named by the caller
      // "mknod: '/proc/…/x': File exists": the reason, without the staging path
      throw new ClipError('EIO', `${name} failed: ${(err.stderr ?? '').trim().split(': ').pop() ?? ''}`);
    });
    if (isUtf8(target)) {
      await tool(target.toString());
      return;
    }
    this.scratch ??= mkdtemp(path.join(this.root, '.clip-extract-'));
    const tmp = path.join(await this.scratch, String(this.made++));
    await tool(tmp);
    await rename(tmp, target);
  }

  /** Remove the scratch directory, if one was made. */
  async done(): Promise<void> {
    if (this.scratch) await rm(await this.scratch, { recursive: true, force: true });
  }
}
