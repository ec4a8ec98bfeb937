/**
 * Independent tools as oracles and writers: umoci (unpack, and a whole image made by umoci alone),
 * skopeo (copy, inspect), GNU tar. Our reader must agree with them, not only with our own writer.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile, symlink, link, chmod, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRoot } from './env.js';

const execFileP = promisify(execFile);

/** Run a program; on failure the error carries its stderr. */
export async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileP(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 256 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * The oracle tree: `umoci unpack` of layoutDir:tag into dest (which must not exist yet).
 * Returns the rootfs directory. Without root, --rootless (ownership and devices then differ).
 */
export async function umociUnpack(layoutDir: string, tag: string, dest: string): Promise<string> {
  await run('umoci', ['unpack', ...(isRoot ? [] : ['--rootless']), '--image', `${layoutDir}:${tag}`, dest]);
  return join(dest, 'rootfs');
}

export interface SkopeoCopyOptions {
  /** Copy every platform of an index, not only this machine's. */
  all?: boolean;
  /** Keep manifests byte for byte (fails rather than converting). */
  preserveDigests?: boolean;
}

/** `skopeo copy` between any transports (oci:DIR:TAG, docker://HOST/REPO:TAG); plain HTTP for registries. */
export async function skopeoCopy(src: string, dst: string, opts: SkopeoCopyOptions = {}): Promise<void> {
  const args = ['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false'];
  if (opts.all) args.push('--all');
  if (opts.preserveDigests) args.push('--preserve-digests');
  // skopeo refuses to run without a signature policy; tests accept anything they made themselves.
  args.push('--policy', await insecurePolicy(), src, dst);
  await run('skopeo', args);
}

/** `skopeo inspect` (raw: the manifest bytes as stored). */
export async function skopeoInspect(ref: string, raw = false): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', ...(raw ? ['--raw'] : []), ref]);
  return stdout;
}

let policyPath: string | undefined;
async function insecurePolicy(): Promise<string> {
  if (policyPath) return policyPath;
  const dir = join((await import('node:os')).tmpdir(), `clip-skopeo-policy-${process.pid}`);
  await mkdir(dir, { recursive: true });
  policyPath = join(dir, 'policy.json');
  await writeFile(policyPath, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  return policyPath;
}

/** GNU tar, for layers in formats our writer does not make (GNU long names, --format=gnu). */
export async function gnuTar(args: string[], cwd?: string): Promise<string> {
  return (await run('tar', args, cwd ? { cwd } : {})).stdout;
}

const FIXED_TIME = new Date('2024-02-03T04:05:06Z');

/**
 * An image made by umoci alone (its own tar and gzip writer): `umoci init/new`, unpack, files put
 * into the rootfs by the file system, `umoci repack`; a second round deletes and replaces things so
 * umoci writes whiteouts. Tagged "base" (one layer) and `tag` (two layers) in layoutDir.
 * Needs root (umoci records real ownership, and the FIFO and device are made with mknod).
 */
export async function buildUmociImage(layoutDir: string, tag: string, workDir: string): Promise<void> {
  await run('umoci', ['init', '--layout', layoutDir]);
  await run('umoci', ['new', '--image', `${layoutDir}:empty`]);
  await run('umoci', ['config', '--image', `${layoutDir}:empty`, '--tag', 'empty', '--config.env', 'UMOCI_FIXTURE=1', '--config.cmd', '/bin/sh']);

  const b1 = join(workDir, 'bundle1');
  await umociUnpack(layoutDir, 'empty', b1);
  const r1 = join(b1, 'rootfs');
  await mkdir(join(r1, 'etc'), { recursive: true });
  await mkdir(join(r1, 'usr/share/doc/demo'), { recursive: true });
  await mkdir(join(r1, 'opt/tree/sub'), { recursive: true });
  await writeFile(join(r1, 'etc/hostname'), 'umoci-fixture\n');
  await writeFile(join(r1, 'usr/share/doc/demo/README'), 'made by umoci\n'.repeat(100));
  await writeFile(join(r1, 'opt/tree/sub/leaf'), 'leaf\n');
  await writeFile(join(r1, 'opt/tree/gone'), 'to be deleted\n');
  await writeFile(join(r1, 'usr/suid'), '#!/bin/sh\n');
  await chmod(join(r1, 'usr/suid'), 0o4755);
  await symlink('../usr/share/doc/demo/README', join(r1, 'etc/readme-link'));
  await link(join(r1, 'etc/hostname'), join(r1, 'etc/hostname-hard'));
  await run('mkfifo', [join(r1, 'etc/fifo')]);
  await run('python3', ['-c', `import os; os.setxattr(${JSON.stringify(join(r1, 'etc/hostname'))}, 'user.origin', b'umoci')`]);
  for (const p of ['etc/hostname', 'usr/share/doc/demo/README', 'opt/tree/sub/leaf', 'opt/tree/gone', 'usr/suid']) {
    await utimes(join(r1, p), FIXED_TIME, FIXED_TIME);
  }
  await run('umoci', ['repack', '--image', `${layoutDir}:base`, b1]);

  const b2 = join(workDir, 'bundle2');
  await umociUnpack(layoutDir, 'base', b2);
  const r2 = join(b2, 'rootfs');
  await rm(join(r2, 'opt/tree/gone'));
  await rm(join(r2, 'usr/share/doc'), { recursive: true });
  await writeFile(join(r2, 'etc/hostname'), 'umoci-fixture-2\n');
  await writeFile(join(r2, 'opt/added'), 'added in layer 2\n');
  await run('umoci', ['repack', '--image', `${layoutDir}:${tag}`, b2]);
  await run('umoci', ['gc', '--layout', layoutDir]);
}

/** One path of a tree as the kernel reports it: what tests compare between umoci, extract and mounts. */
export interface TreeNode {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: number; // permission bits incl. setuid/setgid/sticky
  uid: number;
  gid: number;
  size: number; // files only (0 otherwise)
  mtimeNs: string; // nanoseconds since the epoch, as a decimal string
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  sha256?: string; // files only
  xattrs: Record<string, string>; // name -> hex
  ino: number;
  nlink: number;
}

const SNAPSHOT_PY = String.raw`
import hashlib, json, os, stat, sys
root = sys.argv[1]
out = {}
# Names that are not UTF-8 keep their bytes as \xNN, as clip's shownBytes() prints them.
shown = lambda s: os.fsencode(s).decode('utf-8', 'backslashreplace')
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        p = os.path.join(dirpath, name)
        st = os.lstat(p)
        m = st.st_mode
        t = ('dir' if stat.S_ISDIR(m) else 'file' if stat.S_ISREG(m) else 'symlink' if stat.S_ISLNK(m)
             else 'char' if stat.S_ISCHR(m) else 'block' if stat.S_ISBLK(m) else 'fifo' if stat.S_ISFIFO(m) else 'socket')
        n = {'type': t, 'mode': stat.S_IMODE(m), 'uid': st.st_uid, 'gid': st.st_gid,
             'size': st.st_size if t == 'file' else 0, 'mtimeNs': str(st.st_mtime_ns), 'ino': st.st_ino, 'nlink': st.st_nlink, 'xattrs': {}}
        if t == 'symlink': n['linkTarget'] = shown(os.readlink(p))
        if t in ('char', 'block'): n['devMajor'] = os.major(st.st_rdev); n['devMinor'] = os.minor(st.st_rdev)
        if t == 'file':
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''): h.update(chunk)
            n['sha256'] = h.hexdigest()
        try:
            for k in sorted(os.listxattr(p, follow_symlinks=False)): n['xattrs'][k] = os.getxattr(p, k, follow_symlinks=False).hex()
        except OSError:
            pass
        out[shown(os.path.relpath(p, root))] = n
json.dump(out, sys.stdout)
`;

/** Every path under `root` (relative, no "./"), with metadata, content hash and xattrs; python3 reads xattrs node cannot. */
export async function snapshotTree(root: string): Promise<Map<string, TreeNode>> {
  const { stdout } = await run('python3', ['-c', SNAPSHOT_PY, root]);
  return new Map(Object.entries(JSON.parse(stdout) as Record<string, TreeNode>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Groups of paths sharing an inode (hardlinks), each sorted, for comparing link structure across trees. */
export function hardlinkGroups(tree: Map<string, TreeNode>): string[][] {
  const byIno = new Map<number, string[]>();
  for (const [path, node] of tree) if (node.type !== 'dir') byIno.set(node.ino, [...(byIno.get(node.ino) ?? []), path]);
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
}
