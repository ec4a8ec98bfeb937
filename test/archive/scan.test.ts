import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanLayer } from '../../src/archive/scan.js';
import { closeScanPool, scanLayerInWorker } from '../../src/archive/scan-pool.js';
import type { LayerCompression } from '../../src/archive/types.js';
import { isClipError } from '../../src/util/errors.js';
import { makeTar, tmpDir } from './fixtures.js';
import { END, header } from './tar-builder.js';

let dir: string;
let tar: Buffer;
const files: Record<LayerCompression, string> = { none: '', gzip: '', zstd: '' };

function sha256sum(file: string): string {
  return `sha256:${execFileSync('sha256sum', [file]).toString().split(' ')[0]}`;
}

beforeAll(() => {
  dir = tmpDir('clip-scan-');
  tar = makeTar(dir);
  files.none = path.join(dir, 'layer.tar');
  fs.writeFileSync(files.none, tar);
  execFileSync('gzip', ['-k', files.none]);
  execFileSync('zstd', ['-q', '-k', files.none]);
  files.gzip = `${files.none}.gz`;
  files.zstd = `${files.none}.zst`;
});

afterAll(async () => {
  await closeScanPool();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.each(['gzip', 'zstd', 'none'] as const)('scanLayer of a %s layer', (compression) => {
  it('digests match sha256sum of the blob and of the tar', async () => {
    const progress: number[] = [];
    const scan = await scanLayer(fs.createReadStream(files[compression]), { compression, onProgress: (n) => progress.push(n) });
    expect(scan.digest).toBe(sha256sum(files[compression]));
    expect(scan.diffId).toBe(sha256sum(files.none));
    expect(scan.compressedSize).toBe(fs.statSync(files[compression]).size);
    expect(scan.uncompressedSize).toBe(tar.length);
    expect(progress.at(-1)).toBe(scan.compressedSize);
  });

  it('chunk digests are the sha256 of each chunkSize piece', async () => {
    const chunkSize = 256 * 1024;
    const scan = await scanLayer(fs.createReadStream(files[compression]), { compression, chunkSize });
    const expected: Buffer[] = [];
    for (let i = 0; i < tar.length; i += chunkSize) expected.push(createHash('sha256').update(tar.subarray(i, i + chunkSize)).digest());
    expect(scan.chunkSize).toBe(chunkSize);
    expect(scan.chunkDigests.equals(Buffer.concat(expected))).toBe(true);
  });

  it('the worker gives the same result', async () => {
    const here = await scanLayer(fs.createReadStream(files[compression]), { compression, span: 256 * 1024 });
    const there = await scanLayerInWorker(fs.createReadStream(files[compression]), { compression, span: 256 * 1024 });
    expect(there).toEqual(here);
    expect(Buffer.isBuffer(there.chunkDigests)).toBe(true);
  });
});

describe('scanLayerInWorker', () => {
  it('scans several layers at once', async () => {
    const all = await Promise.all((['gzip', 'zstd', 'none', 'gzip'] as const).map((c) =>
      scanLayerInWorker(async () => fs.createReadStream(files[c]), { compression: c })));
    expect(new Set(all.map((s) => s.diffId)).size).toBe(1);
  });

  it('passes on a failing source and stays usable', async () => {
    const blob = fs.readFileSync(files.gzip);
    async function* broken() {
      yield blob.subarray(0, 100_000);
      throw new Error('connection reset');
    }
    await expect(scanLayerInWorker(broken(), { compression: 'gzip' })).rejects.toThrow('connection reset');
    const ok = await scanLayerInWorker(fs.createReadStream(files.gzip), { compression: 'gzip' });
    expect(ok.uncompressedSize).toBe(tar.length);
  });

  it('reports corrupt input as the same ClipError, and the pool keeps working', async () => {
    const bad = Buffer.from(fs.readFileSync(files.gzip));
    bad.fill(0x55, 5000, 6000);
    const err = await scanLayerInWorker((async function* () { yield bad; })(), { compression: 'gzip', name: 'sha256:bad' }).catch((e: unknown) => e);
    expect(isClipError(err, 'ECORRUPT')).toBe(true);
    expect((err as Error).message).toMatch(/^sha256:bad: /);
    const ok = await scanLayerInWorker(fs.createReadStream(files.gzip), { compression: 'gzip' });
    expect(ok.uncompressedSize).toBe(tar.length);
  });
});

describe('scanLayer told the expected digest (a store that does not verify, damage in transit)', () => {
  it('reports a flipped byte that breaks the tar as a digest mismatch of the blob, in a worker too', async () => {
    const blob = fs.readFileSync(files.none);
    const expected = { digest: sha256sum(files.none), size: blob.length };
    const damaged = Buffer.from(blob);
    damaged[100] = damaged[100]! ^ 0xff; // inside the first tar header: its checksum fails first
    await expect(scanLayer(Readable.from([damaged]), { compression: 'none' })).rejects.toThrow(/bad tar header checksum/);
    for (const scan of [scanLayer, scanLayerInWorker]) {
      await expect(scan(Readable.from([damaged]), { compression: 'none', name: expected.digest, expect: expected })).rejects.toMatchObject({
        code: 'EDIGEST', object: expected.digest, message: expect.stringMatching(/downloaded blob has sha256:[0-9a-f]{64} \(\d+ bytes\), its descriptor says/),
      });
    }
  });

  it('reports a blob longer than its descriptor at once, and a wrong diff_id of a good blob as such', async () => {
    const blob = fs.readFileSync(files.gzip);
    const digest = sha256sum(files.gzip);
    await expect(scanLayer(Readable.from([blob]), { compression: 'gzip', expect: { digest, size: blob.length - 1 } })).rejects.toMatchObject({
      code: 'EDIGEST', message: expect.stringMatching(/more than the \d+ bytes its descriptor says/),
    });
    const diffId = `sha256:${'0'.repeat(64)}`;
    await expect(scanLayer(Readable.from([blob]), { compression: 'gzip', expect: { digest, size: blob.length, diffId } })).rejects.toMatchObject({
      code: 'EDIGEST', message: expect.stringMatching(/uncompressed layer has digest .* the config's diff_id is sha256:0+/),
    });
    const ok = await scanLayer(Readable.from([blob]), { compression: 'gzip', expect: { digest, size: blob.length, diffId: sha256sum(files.none) } });
    expect(ok.digest).toBe(digest);
  });
});

describe('limits per layer', () => {
  /** A gzip stream of a tar holding one file of `mib` MiB of zeros, made as it is read. */
  function zerosLayer(mib: number): Readable {
    function* tar(): Generator<Buffer> {
      yield header({ name: 'zeros', size: mib * 2 ** 20 });
      const zeros = Buffer.alloc(2 ** 20);
      for (let i = 0; i < mib; i++) yield zeros;
      yield END;
    }
    return Readable.from(tar()).pipe(createGzip({ level: 1 }));
  }

  it('stops a gzip bomb at the inflated bytes limit, naming the layer', async () => {
    await expect(scanLayerInWorker(zerosLayer(320), { compression: 'gzip', name: 'sha256:bomb', maxInflated: 64 * 2 ** 20 })).rejects.toMatchObject({
      code: 'EUNSUPPORTED', object: 'sha256:bomb', message: expect.stringMatching(/inflates to more than 67108864 bytes, the limit per layer \(--max-inflated\)/),
    });
    // The same layer under the limit scans, its checkpoint windows kept deflated when asked.
    const scan = await scanLayerInWorker(zerosLayer(32), { compression: 'gzip', maxInflated: 64 * 2 ** 20, packWindows: true });
    expect(scan.uncompressedSize).toBe(32 * 2 ** 20 + 1536);
    const packed = scan.checkpoints.filter((c) => c.packed);
    expect(packed.length).toBeGreaterThan(5);
    expect(packed.every((c) => c.window.length === 0 && c.packed!.rawLength === 32768 && c.packed!.bytes.length < 200)).toBe(true);
  });

  it('stops at the limit even when told the digest (no reading the rest of the bomb to check it)', async () => {
    const blob: Buffer[] = [];
    for await (const c of zerosLayer(96)) blob.push(c as Buffer);
    const whole = Buffer.concat(blob);
    const expected = { digest: `sha256:${createHash('sha256').update(whole).digest('hex')}`, size: whole.length };
    let fed = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      for (let at = 0; at < whole.length; at += 4096) {
        fed = at + 4096;
        yield whole.subarray(at, at + 4096);
      }
    }
    await expect(scanLayer(counted(), { compression: 'gzip', name: 'sha256:bomb', maxInflated: 8 * 2 ** 20, expect: expected })).rejects.toMatchObject({ code: 'EUNSUPPORTED' });
    expect(fed).toBeLessThan(whole.length / 4);
  });

  it('stops a layer with too many entries, naming it', async () => {
    const many = Buffer.concat([...Array.from({ length: 3000 }, (_, i) => header({ name: `f${i}`, size: 0 })), END]);
    await expect(scanLayer(Readable.from([many]), { compression: 'none', name: 'sha256:many', maxEntries: 2000 })).rejects.toMatchObject({
      code: 'EUNSUPPORTED', object: 'sha256:many', message: expect.stringMatching(/more than 2000 entries, the limit per layer \(--max-entries\)/),
    });
    expect((await scanLayer(Readable.from([many]), { compression: 'none', maxEntries: 3000 })).entries).toHaveLength(3000);
  });

  it('a worker streams entries out in batches as it finds them; the result is the same as in this thread', async () => {
    const chunks = Array.from({ length: 10 }, (_, c) => Buffer.concat(Array.from({ length: 1000 }, (_, i) => header({ name: `d${c}/f${i}`, size: 0 }))));
    const here = await scanLayer(Readable.from([...chunks, END]), { compression: 'none' });
    const there = await scanLayerInWorker(Readable.from([...chunks.map((b) => Buffer.from(b)), Buffer.from(END)]), { compression: 'none' });
    expect(there.entries).toHaveLength(10_000);
    expect(there).toEqual(here);
  });
});
