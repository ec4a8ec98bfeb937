import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultCacheDir, ensurePrivateDir } from '../../src/storage/cache-dir.js';
import { tempDir } from './helpers.js';
import { rm } from 'node:fs/promises';

describe('cache directory', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('is /var/cache/clip for root and the XDG cache dir otherwise', () => {
    expect(defaultCacheDir({}, 0)).toBe('/var/cache/clip');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/cache', HOME: '/home/u' }, 1000)).toBe('/x/cache/clip');
    expect(defaultCacheDir({ HOME: '/home/u' }, 1000)).toBe('/home/u/.cache/clip');
    expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative', HOME: '/home/u' }, 1000)).toBe('/home/u/.cache/clip');
  });

  it('creates directories 0700 whatever the umask', async () => {
    const root = await tempDir();
    dirs.push(root);
    const old = process.umask(0o022);
    try {
      await ensurePrivateDir(path.join(root, 'a', 'b'));
    } finally {
      process.umask(old);
    }
    expect((await stat(path.join(root, 'a', 'b'))).mode & 0o777).toBe(0o700);
  });
});
