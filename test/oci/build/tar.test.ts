import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededContent, seededBytes, seededStream, tarStream, type LayerEntry } from '../../../src/oci/build/index.js';
import { isClipError } from '../../../src/util/errors.js';
import { skipUnlessRoot } from '../../support/env.js';
import { gnuTar, snapshotTree } from '../../support/tools.js';

const CAP = Buffer.from([0x01, 0, 0, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0, 0, 0, 0]);
const T = 1_700_000_000;

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'clip-tar-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

async function writeTar(name: string, entries: LayerEntry[]): Promise<string> {
  const path = join(dir, name);
  await pipeline(tarStream(entries), createWriteStream(path));
  return path;
}

describe('tarStream, read back by GNU tar', () => {
  const longPath = `${'a'.repeat(120)}/${'b'.repeat(120)}/file`;
  const longTarget = `/${'t'.repeat(180)}`;
  const entries: LayerEntry[] = [
    { type: 'dir', path: 'etc', mode: 0o750, mtime: { sec: T, nsec: 123456789 } },
    { type: 'file', path: 'etc/suid', content: 'x', mode: 0o4755, uid: 1000, gid: 2000, uname: 'alice', gname: 'staff', mtime: { sec: T } },
    { type: 'file', path: 'etc/nomode', content: 'y', mode: 0, mtime: { sec: T } },
    { type: 'dir', path: 'sticky', mode: 0o1777, mtime: { sec: T } },
    { type: 'file', path: 'caps', content: 'c', xattrs: { 'security.capability': CAP, 'user.note': 'hello' }, mtime: { sec: T } },
    { type: 'symlink', path: 'link', target: 'etc/suid', mtime: { sec: T } },
    { type: 'hardlink', path: 'hard', target: 'etc/suid', mtime: { sec: T } },
    { type: 'fifo', path: 'pipe', mode: 0o600, mtime: { sec: T } },
    { type: 'char', path: 'null', major: 1, minor: 3, mode: 0o666, mtime: { sec: T } },
    { type: 'block', path: 'loop', major: 7, minor: 1, mode: 0o660, mtime: { sec: T } },
    { type: 'dir', path: 'a'.repeat(120), mtime: { sec: T } },
    { type: 'dir', path: `${'a'.repeat(120)}/${'b'.repeat(120)}`, mtime: { sec: T } },
    { type: 'file', path: longPath, content: 'deep', mtime: { sec: T } },
    { type: 'symlink', path: 'longlink', target: longTarget, mtime: { sec: T } },
    { type: 'file', path: 'ünï-名', content: 'u', uid: 3_000_000, mtime: { sec: T } },
    { type: 'file', path: 'big', content: seededContent('tar-test', 300_000, { compressible: 0.5 }), mtime: { sec: T } },
  ];

  it('lists every entry with its type, mode, owner, mtime and link target', async () => {
    const tar = await writeTar('all.tar', entries);
    const listing = await gnuTar(['--numeric-owner', '--full-time', '-tvf', tar]);
    const lines = listing.trim().split('\n');
    expect(lines).toHaveLength(entries.length);
    expect(lines[0]).toMatch(/^drwxr-x--- 0\/0 +0 2023-11-14 22:13:20\.123456789 etc\/$/);
    expect(lines[1]).toMatch(/^-rwsr-xr-x 1000\/2000 +1 .* etc\/suid$/);
    expect(lines[2]).toMatch(/^---------- 0\/0 +1 .* etc\/nomode$/);
    expect(lines[3]).toMatch(/^drwxrwxrwt .* sticky\/$/);
    expect(lines[11]).toMatch(/ a{120}\/b{120}\/$/);
    expect(lines[5]).toMatch(/^lrwxrwxrwx .* link -> etc\/suid$/);
    expect(lines[6]).toMatch(/^hrw-r--r-- .* hard link to etc\/suid$/);
    expect(lines[7]).toMatch(/^prw------- .* pipe$/);
    expect(lines[8]).toMatch(/^crw-rw-rw- 0\/0 +1,3 .* null$/);
    expect(lines[9]).toMatch(/^brw-rw---- 0\/0 +7,1 .* loop$/);
    expect(lines[12]).toContain(longPath);
    expect(lines[13]).toContain(`longlink -> ${longTarget}`);
    expect(lines[14]).toMatch(/^-rw-r--r-- 3000000\/0 .* ünï-名$/);
    expect(lines[15]).toMatch(/^-rw-r--r-- 0\/0 +300000 .* big$/);
    // Owner names travel too.
    expect(await gnuTar(['-tvf', tar, 'etc/suid'])).toMatch(/alice\/staff/);
  });

  it.skipIf(skipUnlessRoot())('extracts with binary xattrs, devices and content intact', async () => {
    const tar = await writeTar('x.tar', entries);
    const out = join(dir, 'x');
    await mkdir(out);
    await gnuTar(['--xattrs', '--xattrs-include=*', '--same-owner', '--numeric-owner', '-xpf', tar, '-C', out]);
    const tree = await snapshotTree(out);
    expect(tree.get('caps')!.xattrs).toEqual({ 'security.capability': CAP.toString('hex'), 'user.note': Buffer.from('hello').toString('hex') });
    expect(tree.get('null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3 });
    expect(tree.get('etc/suid')).toMatchObject({ mode: 0o4755, uid: 1000, gid: 2000 });
    expect(tree.get('etc/suid')!.ino).toBe(tree.get('hard')!.ino);
    expect(tree.get('etc')!.mtimeNs).toBe(`${T}123456789`);
    const bigHash = createHash('sha256').update(seededBytes('tar-test', 300_000, { compressible: 0.5 })).digest('hex');
    expect(tree.get('big')!.sha256).toBe(bigHash);
  });

  it('ends with two zero blocks and pads to 512 bytes', async () => {
    const chunks: Buffer[] = [];
    for await (const c of tarStream([{ type: 'file', path: 'f', content: 'abc' }])) chunks.push(c as Buffer);
    const tar = Buffer.concat(chunks);
    expect(tar.length).toBe(512 + 512 + 1024);
    expect(tar.subarray(1024).every((b) => b === 0)).toBe(true);
  });

  it('copies a host file and refuses a missing one with an error naming it', async () => {
    const host = join(dir, 'host.txt');
    await writeFile(host, 'from the host\n');
    const tar = await writeTar('host.tar', [{ type: 'file', path: 'copied', content: { path: host } }]);
    expect(await gnuTar(['-xOf', tar, 'copied'])).toBe('from the host\n');

    const err = await writeTar('missing.tar', [{ type: 'file', path: 'x', content: { path: join(dir, 'nope') } }]).catch((e: unknown) => e);
    expect(isClipError(err, 'ENOTFOUND')).toBe(true);
    expect((err as Error).message).toContain(join(dir, 'nope'));
  });

  it('fails when a generator yields fewer bytes than it announced', async () => {
    const fixed: LayerEntry = { type: 'file', path: 'short', content: { size: 1000, generate: () => seededStream('s', 10) } };
    const err = await writeTar('short.tar', [fixed]).catch((e: unknown) => e);
    expect(isClipError(err, 'EINVAL')).toBe(true);
    expect((err as Error).message).toContain('short');
  });
});
