/**
 * The basic fixture mounted from its OCI layout, against `umoci unpack` of the same image, plus the
 * attributes a tar has no record of (the root, directory sizes, blocks) and the read-only answers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipUnlessRoot } from '../support/env.js';
import { fixture } from '../support/fixtures/index.js';
import { CAPABILITY } from '../support/fixtures/images/basic.js';
import { hardlinkGroups, snapshotTree, umociUnpack } from '../support/tools.js';
import { diffTrees } from '../index/tree-compare.js';
import { python, run } from '../fuse/tools.js';
import { indexImage, mountIndex, type MountedImage } from './helpers.js';

describe.skipIf(skipUnlessRoot())('ImageFilesystem on the basic fixture', () => {
  let mounted: MountedImage;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'clip-fs-basic-'));
    const fx = await fixture('basic');
    mounted = await mountIndex(await indexImage(fx.ref));
  });
  afterAll(async () => {
    await mounted?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('shows the tree umoci unpacks: every path, type, mode, owner, size, link, device, xattr, content, hardlink group', async () => {
    const fx = await fixture('basic');
    const expected = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag!, join(work, 'unpack')));
    const actual = await snapshotTree(mounted.dir);
    expect(diffTrees(expected, actual, { contents: true })).toEqual([]);
    expect(actual.size).toBe(expected.size);
    expect(hardlinkGroups(actual)).toEqual(hardlinkGroups(expected));
    expect(hardlinkGroups(actual).length).toBeGreaterThan(0);
    expect(actual.get('usr/bin/ping-like')!.xattrs['security.capability']).toBe(CAPABILITY.toString('hex'));
  });

  it('gives the root and directories the attributes a real directory has', async () => {
    const r = await python(String.raw`
import os, sys, json
root = sys.argv[1]
st = os.stat(root)
subdirs = sum(1 for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n)))
f = os.stat(os.path.join(root, 'usr/lib/libdemo.so.1'))
d = os.stat(os.path.join(root, 'usr'))
h = os.stat(os.path.join(root, 'etc/hostname'))
vfs = os.statvfs(root)
print(json.dumps({'rootNlink': st.st_nlink, 'subdirs': subdirs, 'rootIno': st.st_ino, 'dirSize': d.st_size,
  'fileBlocks': f.st_blocks, 'fileSize': f.st_size, 'hostnameNs': h.st_mtime_ns % 1000000000, 'files': vfs.f_files,
  'blocks': vfs.f_blocks, 'ro': bool(vfs.f_flag & os.ST_RDONLY)}))
`, mounted.dir);
    expect(r.stderr).toBe('');
    const s = JSON.parse(r.stdout) as Record<string, number | boolean>;
    expect(s.rootIno).toBe(1);
    expect(s.rootNlink).toBe(2 + (s.subdirs as number));
    expect(s.dirSize).toBe(4096);
    expect(s.fileBlocks).toBe(Math.ceil((s.fileSize as number) / 512));
    expect(s.hostnameNs).toBe(5); // nanoseconds survive
    expect(s.files).toBe(mounted.index.inodeCount);
    expect(s.blocks).toBeGreaterThan(0);
    expect(s.ro).toBe(true);
  });

  it('answers writes with EROFS, missing names with ENOENT, and lists directories page by page', async () => {
    const w = await python(`
import errno, os, sys
root = sys.argv[1]
out = []
for op in (lambda: open(os.path.join(root, 'etc/hostname'), 'w'), lambda: os.mkdir(os.path.join(root, 'newdir')),
           lambda: os.unlink(os.path.join(root, 'etc/motd')), lambda: os.stat(os.path.join(root, 'nope')),
           lambda: os.stat(os.path.join(root, 'nope'))):
    try:
        op(); out.append('ok')
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(' '.join(out))
print(os.access(os.path.join(root, 'etc/hostname'), os.W_OK), os.access(os.path.join(root, 'etc/hostname'), os.R_OK))
print(len(os.listdir(os.path.join(root, 'usr/share/many'))))
with open(os.path.join(root, 'usr/share/many/file-199.txt'), 'rb') as f:
    f.seek(1500); print(len(f.read()))
`, mounted.dir);
    expect(w.stderr).toBe('');
    expect(w.stdout.split('\n')).toEqual(['EROFS EROFS EROFS ENOENT ENOENT', 'False True', '200', String('file 199\n'.length * 200 - 1500), '']);
    // The second stat of "nope" was answered by the kernel from its negative cache.
    const lookups = mounted.mount.server.opCounts.get('LOOKUP') ?? 0;
    await python('import os, sys; [os.path.exists(sys.argv[1] + "/nope") for _ in range(20)]', mounted.dir);
    expect(mounted.mount.server.opCounts.get('LOOKUP') ?? 0).toBe(lookups);
  });

  it('reads across chunk boundaries and at the end of a file exactly', async () => {
    const file = join(mounted.dir, 'opt/app/large.bin');
    const [whole, tail] = await Promise.all([
      run('sha256sum', [file]),
      python('import sys; f = open(sys.argv[1], "rb"); f.seek(2_999_990); print(len(f.read(100)))', file),
    ]);
    const expected = await snapshotTree(await umociUnpack((await fixture('basic')).layoutDir, 'latest', join(work, 'unpack2')));
    expect(whole.stdout.split(' ')[0]).toBe(expected.get('opt/app/large.bin')!.sha256);
    expect(tail.stdout.trim()).toBe('10');
    // Every READ buffer came back once its reply was written.
    expect(mounted.fs.readsInFlight).toBe(0);
  });
});
