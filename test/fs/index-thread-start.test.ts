/**
 * A FUSE reader thread's start (src/fs/index-thread.ts), as the node's server runs it: the built
 * module in a plain worker, over the main thread's shared index bytes. The thread checks nothing
 * the main thread checked already, and loads no module it does not answer with (each new thread
 * of a cold start paid ~20 ms of CPU for them: bench/mount/thread-start.ts), yet answers as the
 * main thread's index does.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ImageIndex } from '../../src/index/reader.js';
import { fixture } from '../support/fixtures/index.js';
import { indexImage } from './helpers.js';

const BUILT = path.join(fileURLToPath(new URL('../../', import.meta.url)), 'dist/fs/index-thread.js');
const PATHS = ['opt/app/large.bin', 'etc', 'bin/sh', 'no/such/file'];

/** Runs in the worker: the built module over the shared bytes; the answers and the builtins it loaded. */
const THREAD = `
import { parentPort, workerData } from 'node:worker_threads';
const { createSyncFilesystem } = await import(workerData.module);
const fs = createSyncFilesystem({ index: workerData.index, file: workerData.file, timeoutSeconds: 1 });
const answers = workerData.paths.map((p) => {
  let ino = 1;
  for (const part of p.split('/')) {
    const e = fs.lookup(ino, Buffer.from(part));
    if (!e) return null;
    ino = e.ino;
  }
  const a = fs.getattr(ino);
  // FUSE shows a directory's size as a block; a file's is its own.
  return { ino, mode: a.mode, ...((a.mode & 0o170000) === 0o100000 ? { size: a.size } : {}) };
});
parentPort.postMessage({ answers, loaded: process.moduleLoadList.filter((m) => /^NativeModule (crypto|zlib|fs\\/promises)$/.test(m)) });
`;

function mainAnswer(index: ImageIndex, p: string): { ino: number; mode: number; size?: number } | null {
  let ino = index.rootIno;
  for (const part of p.split('/')) {
    const child = index.lookup(ino, Buffer.from(part));
    if (child <= 0) return null;
    ino = child;
  }
  const a = index.getattr(ino);
  return { ino, mode: a.mode, ...((a.mode & 0o170000) === 0o100000 ? { size: a.size } : {}) };
}

describe("a reader thread's index", () => {
  let index: ImageIndex;
  beforeAll(async () => {
    index = await indexImage((await fixture('basic')).ref, { chunkSize: 64 * 1024 });
  });

  it('answers as the main thread does, loading no hashing, inflating or promise-fs module', async () => {
    // Built by `npm test` before the tests run; the server runs this very file.
    expect(existsSync(BUILT)).toBe(true);
    const sab = new SharedArrayBuffer(index.buffer.length);
    index.buffer.copy(Buffer.from(sab));
    // A data: URL is an ES module, as the server's reader-worker.js is.
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(THREAD)}`), { workerData: { module: pathToFileURL(BUILT).href, index: sab, file: 'basic.clip', paths: PATHS } });
    try {
      const got = await new Promise<{ answers: unknown[]; loaded: string[] }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      expect(got.answers).toEqual(PATHS.map((p) => mainAnswer(index, p)));
      expect(got.answers.filter(Boolean).length).toBeGreaterThanOrEqual(2);
      expect(got.loaded).toEqual([]);
    } finally {
      await w.terminate();
    }
  });
});
