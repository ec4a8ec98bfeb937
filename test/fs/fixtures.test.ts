/**
 * Every fixture image mounted, against `umoci unpack` of the same image: every path, type, mode,
 * owner, size, link target, device number, xattr, content hash and hardlink group, as the kernel
 * reports them through the mount. Directory mtimes are left out: umoci stamps directories it
 * creates implicitly (and lower ones a later layer changed) with the time of the unpack.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipUnlessRoot } from '../support/env.js';
import { fixture, type FixtureName } from '../support/fixtures/index.js';
import { hardlinkGroups, snapshotTree, umociUnpack } from '../support/tools.js';
import { diffTrees } from '../index/tree-compare.js';
import { indexImage, mountIndex } from './helpers.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'clip-fs-fixtures-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe.skipIf(skipUnlessRoot())('a mounted image equals umoci unpack', () => {
  const names: FixtureName[] = ['basic', 'overlay', 'longnames', 'docker', 'zstd', 'uncompressed', 'umoci', 'big'];
  it.each(names)('%s', async (name) => {
    const fx = await fixture(name);
    const mounted = await mountIndex(await indexImage(fx.ref));
    try {
      const expected = await snapshotTree(await umociUnpack(fx.layoutDir, fx.oracleTag ?? fx.tag, join(work, name)));
      const actual = await snapshotTree(mounted.dir);
      expect(diffTrees(expected, actual, { contents: true })).toEqual([]);
      expect(actual.size).toBe(expected.size);
      expect(hardlinkGroups(actual)).toEqual(hardlinkGroups(expected));
    } finally {
      await mounted.close();
      await rm(join(work, name), { recursive: true, force: true });
    }
  }, 180_000);
});
