/** Temporary index files a kill -9 left in CACHE_DIR/indexes/ are removed, once stale, by the next store and by `cache gc`. */
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STALE_TEMP_MS } from '../../src/index/writer.js';
import { cacheGc } from '../../src/storage/index.js';
import { storeCachedIndex } from '../../src/storage/indexer.js';
import { sha256 } from '../index/layers.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-index-temps-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const STALE = `${'a'.repeat(64)}.clip.tmp-123-1700000000000`;

/** An indexes/ dir holding a stale and a fresh temporary, and things that only look like one; returns what must stay. */
async function littered(cacheDir: string): Promise<{ dir: string; kept: string[] }> {
  const dir = join(cacheDir, 'indexes');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const old = (Date.now() - STALE_TEMP_MS - 60_000) / 1000;
  const fresh = `${'b'.repeat(64)}.clip.tmp-456-${Date.now()}`;
  await writeFile(join(dir, STALE), 'killed writer');
  await writeFile(join(dir, fresh), 'a writer at work');
  await writeFile(join(dir, 'notes.tmp'), 'not ours');
  await mkdir(join(dir, 'd.clip.tmp-1-2'));
  for (const n of [STALE, 'notes.tmp', 'd.clip.tmp-1-2']) await utimes(join(dir, n), old, old);
  await symlink('/etc/passwd', join(dir, 'l.clip.tmp-1-2'));
  return { dir, kept: [fresh, 'notes.tmp', 'd.clip.tmp-1-2', 'l.clip.tmp-1-2'] };
}

describe('stale temporary index files', () => {
  it('the next index stored in the cache removes them, and only them', async () => {
    const cacheDir = join(tmp, 'store');
    const { dir, kept } = await littered(cacheDir);
    const stored = await storeCachedIndex(cacheDir, sha256('manifest'), Buffer.from('index bytes'));
    expect((await readdir(dir)).sort()).toEqual([...kept, stored.slice(dir.length + 1)].sort());
  });

  it('clip cache gc removes them and says how many', async () => {
    const cacheDir = join(tmp, 'gc');
    const { dir, kept } = await littered(cacheDir);
    const gc = await cacheGc(Infinity, cacheDir);
    expect(gc.staleIndexTempsRemoved).toBe(1);
    expect((await readdir(dir)).sort()).toEqual(kept.sort());
    expect((await cacheGc(Infinity, cacheDir)).staleIndexTempsRemoved).toBe(0);
  });
});
