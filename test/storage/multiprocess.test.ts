import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache } from '../../src/storage/disk-cache.js';
import { Storage } from '../../src/storage/storage.js';
import { chunkCount } from '../../src/storage/types.js';
import { makeTarLayer, ProbeSource, tempDir, type TestLayer } from './helpers.js';

const CHUNK = 64 * 1024;
const FILLER = fileURLToPath(new URL('./fixtures/fill-cache.ts', import.meta.url));

function fill(cacheDir: string, layer: TestLayer, order: 'forward' | 'backward', delayMs: number): ChildProcess {
  const args = JSON.stringify({ cacheDir, layerFile: layer.file, fields: layer.fields, order, delayMs });
  return spawn(process.execPath, ['--import', 'tsx', FILLER, args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })));
}

describe('one cache directory, several processes', () => {
  let root: string;
  let layer: TestLayer;
  let bytes: Buffer;

  beforeAll(async () => {
    root = await tempDir();
    layer = await makeTarLayer(root, { files: 10, bytesEach: 250_000, chunkSize: CHUNK });
    bytes = await readFile(layer.file);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Every chunk marked present holds the right bytes, and the whole layer reads back right. */
  async function checkCache(cacheDir: string, source = new ProbeSource([layer])): Promise<number> {
    const disk = await DiskCache.open({ dir: cacheDir });
    try {
      const lease = await disk.acquire(layer.record);
      const n = chunkCount(layer.record);
      const missing = new Set(await lease.file.missing(0, n - 1));
      for (let i = 0; i < n; i++) {
        if (missing.has(i)) continue;
        const got = Buffer.alloc(Math.min(CHUNK, bytes.length - i * CHUNK));
        await lease.file.read(got, i * CHUNK);
        expect(got.equals(bytes.subarray(i * CHUNK, i * CHUNK + got.length)), `chunk ${i}`).toBe(true);
      }
      lease.release();
      const storage = new Storage({ disk, source });
      expect((await storage.read(layer.record, 0, bytes.length)).equals(bytes)).toBe(true);
      return n - missing.size;
    } finally {
      await disk.close();
    }
  }

  it('kill -9 in the middle of filling leaves a cache a new process reads right bytes from', async () => {
    const cacheDir = await tempDir();
    try {
      const child = fill(cacheDir, layer, 'forward', 20);
      const done = exited(child);
      let seen = 0;
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          seen += d.toString().split('\n').filter((l) => l.startsWith('chunk')).length;
          if (seen >= 10) resolve();
        });
        void done.then((r) => reject(new Error(`filler exited early: ${r.code} ${r.stderr}`)));
      });
      child.kill('SIGKILL');
      expect((await done).signal).toBe('SIGKILL');
      const present = await checkCache(cacheDir);
      expect(present).toBeGreaterThanOrEqual(10);
      expect(present).toBeLessThan(chunkCount(layer.record));
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('two processes filling one directory at once leave it complete and right', async () => {
    const cacheDir = await tempDir();
    try {
      const results = await Promise.all([exited(fill(cacheDir, layer, 'forward', 0)), exited(fill(cacheDir, layer, 'backward', 0))]);
      for (const r of results) expect(r, r.stderr).toMatchObject({ code: 0 });
      const down = new ProbeSource([layer]);
      down.mode = 'down';
      expect(await checkCache(cacheDir, down)).toBe(chunkCount(layer.record));
      expect(down.calls).toEqual([]);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});
