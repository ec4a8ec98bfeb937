/**
 * Every command's exit status reflects its result: the real entry point (src/cli/main.ts) as a
 * process, against sources that fail at every step (a registry nobody listens on, 404 and 500
 * answers, bodies cut short, a layer compression clip cannot decode), exits non-zero within
 * seconds with one clear error line, never 0 with its work unfinished.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeScanPool } from '../../src/archive/scan-pool.js';
import { scanLayer } from '../../src/archive/scan.js';
import { imageInfoOf, indexedLayerOf } from '../../src/index/meta.js';
import type { LayerCompression } from '../../src/index/types.js';
import { IndexBuilder } from '../../src/index/writer.js';
import { openImage } from '../../src/oci/index.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { pushFixture } from '../support/fixtures/index.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { clip, clipProcess, MAIN, type ProcessRun } from './program.js';

/** Longest a failing command may take: the retries of one request, or the read timeout given. */
const WITHIN_MS = 30_000; // generous: up to eight processes start at once on a loaded machine
const READ_TIMEOUT = ['--read-timeout', '3s'];

let registry: TestRegistry;
let proxy: FaultProxy;
let tmp: string;
let ref: string;
let indexFile: string;
let deadRef: string;
let deadIndexFile: string;
let lz4IndexFile: string;

/** `basic` indexed as if its layers were lz4: an index clip can load but whose layers it cannot decode. */
async function lz4Index(out: string): Promise<void> {
  const source = openImage(ref);
  try {
    const img = await source.resolve();
    const b = new IndexBuilder(imageInfoOf(img));
    for (const l of img.layers) {
      const scan = await scanLayer(await source.openBlob(l.descriptor), { compression: l.compression, name: l.descriptor.digest });
      b.addLayer({ ...indexedLayerOf(l, scan), compression: 'lz4' as LayerCompression }, scan);
    }
    await writeFile(out, b.build());
  } finally {
    await source.close?.();
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-exit-'));
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  ref = (await pushFixture('basic', registry.host)).replace(registry.host, proxy.host);
  indexFile = join(tmp, 'basic.clip');
  await clip('index', ref, '-o', indexFile, '--cache-dir', join(tmp, 'index-cache'), '--no-progress');
  // The same image at a registry that is gone: a second proxy, stopped.
  const gone = await startFaultProxy(registry.host);
  deadRef = ref.replace(proxy.host, gone.host);
  deadIndexFile = join(tmp, 'dead.clip');
  await clip('index', deadRef, '-o', deadIndexFile, '--cache-dir', join(tmp, 'index-cache-2'), '--no-progress');
  await gone.stop();
  lz4IndexFile = join(tmp, 'lz4.clip');
  await lz4Index(lz4IndexFile);
}, 300_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  await closeScanPool();
  await rm(tmp, { recursive: true, force: true });
});

let runs = 0;

/** `clip ARGS` through main.ts with a cache of its own; `{dir}` in ARGS becomes a fresh directory. */
async function run(...args: string[]): Promise<ProcessRun & { dir: string }> {
  const n = runs++;
  const dir = join(tmp, `out-${n}`);
  const argv = [...args.map((a) => (a === '{dir}' ? dir : a)), '--cache-dir', join(tmp, `cache-${n}`)];
  return { ...(await clipProcess(argv, {}, { entry: MAIN, timeoutMs: WITHIN_MS + 5000 })), dir };
}

/** Failed in time, with one "clip: " line (the last, no stack) besides structured log records. */
function expectFailure(r: ProcessRun, what: RegExp): void {
  const lines = r.stderr.trimEnd().split('\n');
  const errors = lines.filter((l) => !l.startsWith('{'));
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.code, `killed after ${r.ms} ms: ${r.stderr}`).not.toBeNull();
  expect(r.ms).toBeLessThan(WITHIN_MS);
  expect(errors, r.stderr).toHaveLength(1);
  expect(lines.at(-1)).toMatch(/^clip: /);
  expect(lines.at(-1)).toMatch(what);
}

const commandsOnIndex = (file: string): string[][] => [
  ['cat', file, '/etc/hostname', ...READ_TIMEOUT],
  ['extract', file, '{dir}', '--no-progress', ...READ_TIMEOUT],
];

describe('exit status against failing sources', () => {
  it('a registry nobody listens on: every command on its reference, cat and extract on its index file', async () => {
    const mountpoint = join(tmp, 'mnt');
    await mkdir(mountpoint);
    const results = await Promise.all([
      run('index', deadRef, '-o', join(tmp, 'never.clip'), '--no-progress'),
      run('ls', deadRef, '/'),
      run('stat', deadRef, '/etc/hostname'),
      ...commandsOnIndex(deadRef).map((a) => run(...a)),
      ...commandsOnIndex(deadIndexFile).map((a) => run(...a)),
      run('mount', deadRef, mountpoint),
    ]);
    for (const r of results) expectFailure(r, /ECONNREFUSED|could not be fetched|failed after|not satisfied|not fetched/);
    for (const r of results) expect(r.stdout.length, r.stderr).toBe(0);
    expect(await readdir(mountpoint)).toEqual([]);
  }, 120_000);

  it('an index whose layers are compressed in a way clip cannot decode (lz4): cat and extract fail, naming it', async () => {
    const results = await Promise.all(commandsOnIndex(lz4IndexFile).map((a) => run(...a)));
    for (const r of results) expectFailure(r, /lz4/);
    expect(results[0]!.stdout.length).toBe(0);
    expect(existsSync(results[1]!.dir)).toBe(false); // no 0-byte files left behind: the failed extraction removed what it made
  }, 180_000);

  it('extract into a missing parent, or to a name too long: one line naming the path, no stack', async () => {
    const [missing, long] = await Promise.all([
      run('extract', indexFile, join(tmp, 'nope', 'rootfs'), '--no-progress'),
      run('extract', indexFile, join(tmp, 'n'.repeat(300)), '--no-progress'),
    ]);
    expectFailure(missing, new RegExp(`^clip: ${join(tmp, 'nope')}: cannot extract here: the parent directory does not exist$`));
    expectFailure(long, /n{300}: mkdir: name or path too long for the file system \(ENAMETOOLONG\)$/);
  }, 180_000);

  it('404 for every blob: index, cat and extract fail naming the blob', async () => {
    try {
      proxy.inject({ kind: 'status', status: 404, match: (r) => r.path.includes('/blobs/'), times: 1000 });
      const results = await Promise.all([
        run('index', ref, '-o', join(tmp, 'never.clip'), '--no-progress'),
        ...commandsOnIndex(indexFile).map((a) => run(...a)),
      ]);
      for (const r of results) expectFailure(r, /not found|could not be fetched/);
    } finally {
      proxy.clearFaults();
    }
  }, 120_000);

  it('500 for every request: every command on the reference fails', async () => {
    const mountpoint = join(tmp, 'mnt-500');
    await mkdir(mountpoint);
    try {
      proxy.inject({ kind: 'status', status: 500, times: 1000 });
      const results = await Promise.all([
        run('index', ref, '-o', join(tmp, 'never.clip'), '--no-progress'),
        run('ls', ref, '/'),
        run('stat', ref, '/etc/hostname'),
        ...commandsOnIndex(indexFile).map((a) => run(...a)),
        run('mount', ref, mountpoint),
      ]);
      for (const r of results) expectFailure(r, /HTTP 500|could not be fetched|not fetched|not satisfied/);
      expect(await readdir(mountpoint)).toEqual([]);
    } finally {
      proxy.clearFaults();
    }
  }, 120_000);

  it('bodies cut short every time: index, cat and extract fail, leaving no file claimed complete', async () => {
    try {
      proxy.inject({ kind: 'truncate', afterBytes: 0, match: (r) => r.path.includes('/blobs/'), times: 1000 });
      const results = await Promise.all([
        run('index', ref, '-o', join(tmp, 'never.clip'), '--no-progress'),
        ...commandsOnIndex(indexFile).map((a) => run(...a)),
      ]);
      for (const r of results) expectFailure(r, /interrupted|could not be fetched|not fetched|not satisfied|ended/);
      expect(results[1]!.stdout.length).toBe(0);
      expect(existsSync(results[2]!.dir)).toBe(false);
    } finally {
      proxy.clearFaults();
    }
  }, 120_000);
});
