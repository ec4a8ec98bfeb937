import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostTree } from '../../src/demo/host-tree.js';
import { isClipError } from '../../src/util/errors.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clip-hosttree-'));
  // A usrmerge-like layout: top/lib -> usr/lib, a versioned library behind two symlinks, one absolute.
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await writeFile(join(root, 'usr/lib/libx.so.1.2.3'), 'ELF');
  await symlink('libx.so.1.2.3', join(root, 'usr/lib/libx.so.1'));
  await symlink('usr/lib', join(root, 'lib'));
  await symlink(join(root, 'lib/libx.so.1'), join(root, 'abs-link'));
  await symlink('loop-b', join(root, 'loop-a'));
  await symlink('loop-a', join(root, 'loop-b'));
});
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

describe('HostTree', () => {
  it('recreates every symlink on the way and copies the real file once', async () => {
    const tree = new HostTree();
    await tree.addPath(join(root, 'abs-link'));
    await tree.addPath(join(root, 'lib/libx.so.1')); // already there: nothing new
    const entries = tree.nextLayer();
    const rel = root.slice(1);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get(`${rel}/abs-link`)).toMatchObject({ type: 'symlink', target: join(root, 'lib/libx.so.1') });
    expect(byPath.get(`${rel}/lib`)).toMatchObject({ type: 'symlink', target: 'usr/lib' });
    expect(byPath.get(`${rel}/usr/lib/libx.so.1`)).toMatchObject({ type: 'symlink', target: 'libx.so.1.2.3' });
    expect(byPath.get(`${rel}/usr/lib/libx.so.1.2.3`)).toMatchObject({ type: 'file', content: { path: `${root}/usr/lib/libx.so.1.2.3` } });
    expect(byPath.get(`${rel}/usr`)!.type).toBe('dir');
    expect(entries.length).toBe(byPath.size); // no duplicates
    // Parents come before children, so the tar is extractable in order.
    const order = entries.map((e) => e.path);
    expect(order.indexOf(`${rel}/usr/lib`)).toBeLessThan(order.indexOf(`${rel}/usr/lib/libx.so.1.2.3`));
  });

  it('does not repeat in a later layer what an earlier one holds', async () => {
    const tree = new HostTree();
    await tree.addPath(join(root, 'usr/lib/libx.so.1.2.3'));
    tree.nextLayer();
    await tree.addPath(join(root, 'lib/libx.so.1'));
    expect(tree.nextLayer().map((e) => e.path)).toEqual([`${root.slice(1)}/lib`, `${root.slice(1)}/usr/lib/libx.so.1`]);
  });

  it('refuses symlink loops and missing files with errors naming the path', async () => {
    const loop = await new HostTree().addPath(join(root, 'loop-a')).catch((e: unknown) => e);
    expect(isClipError(loop, 'EINVAL')).toBe(true);
    const missing = await new HostTree().addPath(join(root, 'nope')).catch((e: unknown) => e);
    expect(isClipError(missing, 'ENOTFOUND')).toBe(true);
    expect((missing as Error).message).toContain(join(root, 'nope'));
  });
});
