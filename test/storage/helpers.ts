/**
 * Test layers: real uncompressed tar files made with GNU tar from random files, with the diff_id
 * and per-chunk sha256 an index would record; and a source wrapper that counts and misbehaves.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { scanLayer } from '../../src/archive/scan.js';
import type { LayerScan } from '../../src/archive/types.js';
import { ClipError } from '../../src/util/errors.js';
import { FileLayerSource } from '../../src/storage/file-source.js';
import { layerRecord, type LayerRecord, type LayerSource } from '../../src/storage/types.js';

export interface TestLayer {
  record: LayerRecord;
  file: string;
  /** Everything an index records, to rebuild the record in a child process. */
  fields: { diffId: string; chunkSize: number; size: number; chunkDigests: string };
}

export async function tempDir(prefix = 'clip-storage-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Digests of a file as the index computes them. */
export async function digestFile(file: string, chunkSize: number): Promise<{ diffId: string; size: number; chunkDigests: Buffer }> {
  const whole = createHash('sha256');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const piece of createReadStream(file, { highWaterMark: chunkSize })) {
    const b = piece as Buffer;
    whole.update(b);
    size += b.length;
    chunks.push(createHash('sha256').update(b).digest());
  }
  return { diffId: `sha256:${whole.digest('hex')}`, size, chunkDigests: Buffer.concat(chunks) };
}

/** A tar of `files` random files of about `bytesEach`, made by GNU tar in `dir`. */
export async function makeTarLayer(dir: string, opts: { files: number; bytesEach: number; chunkSize: number; name?: string }): Promise<TestLayer> {
  const src = path.join(dir, `${opts.name ?? 'layer'}-src`);
  await mkdir(path.join(src, 'usr', 'lib'), { recursive: true });
  for (let i = 0; i < opts.files; i++) {
    await writeFile(path.join(src, 'usr', 'lib', `f${i}.bin`), randomBytes(opts.bytesEach + i * 511));
  }
  const file = path.join(dir, `${opts.name ?? 'layer'}.tar`);
  execFileSync('tar', ['--sort=name', '--format=pax', '-C', src, '-cf', file, '.']);
  const d = await digestFile(file, opts.chunkSize);
  return {
    file,
    record: layerRecord({
      diffId: d.diffId,
      digest: d.diffId,
      compression: 'none',
      compressedSize: d.size,
      uncompressedSize: d.size,
      chunkSize: opts.chunkSize,
      chunkDigests: d.chunkDigests,
    }),
    fields: { diffId: d.diffId, chunkSize: opts.chunkSize, size: d.size, chunkDigests: d.chunkDigests.toString('hex') },
  };
}

export function recordFromFields(f: TestLayer['fields']): LayerRecord {
  return layerRecord({
    diffId: f.diffId,
    digest: f.diffId,
    compression: 'none',
    compressedSize: f.size,
    uncompressedSize: f.size,
    chunkSize: f.chunkSize,
    chunkDigests: Buffer.from(f.chunkDigests, 'hex'),
  });
}

export type SourceMode = 'ok' | 'down' | 'hang' | 'corrupt' | 'corrupt-once' | 'truncate-once';

/** A FileLayerSource that records every request and can be made to fail in the ways networks do. */
export class ProbeSource implements LayerSource {
  readonly calls: [number, number][] = [];
  mode: SourceMode = 'ok';
  delayMs = 0;
  private readonly inner: FileLayerSource;
  private corruptedOnce = false;
  private truncatedOnce = false;

  constructor(layers: TestLayer[]) {
    this.inner = new FileLayerSource(new Map(layers.map((l) => [l.record.diffId, l.file])));
  }

  async readUncompressed(layer: LayerRecord, start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    this.calls.push([start, end]);
    if (this.mode === 'down') throw new ClipError('ENETWORK', 'source is down (test)');
    if (this.mode === 'hang') {
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    }
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    const body = await this.inner.readUncompressed(layer, start, end, signal);
    const corrupt = this.mode === 'corrupt' || (this.mode === 'corrupt-once' && !this.corruptedOnce);
    const truncate = this.mode === 'truncate-once' && !this.truncatedOnce;
    if (corrupt) this.corruptedOnce = true;
    if (truncate) this.truncatedOnce = true;
    return (async function* () {
      let sent = 0;
      const limit = truncate ? Math.floor((end - start) / 2) : Infinity;
      for await (const piece of body) {
        const b = Buffer.from(piece);
        if (corrupt && sent === 0) b[0]! ^= 0x55;
        if (sent + b.length > limit) {
          yield b.subarray(0, limit - sent);
          throw new ClipError('ENETWORK', 'connection reset (test)');
        }
        sent += b.length;
        yield b;
      }
    })();
  }
}

export interface GzipLayout {
  tar: Buffer;
  /** The source tree the tar was made from. */
  srcDir: string;
  scan: LayerScan;
  /** An OCI image layout directory holding the gzip blob. */
  layoutDir: string;
}

/** A tar layer gzipped by gzip(1), scanned for checkpoints, its blob in an OCI layout. */
export async function makeGzipLayout(dir: string, opts: { files: number; bytesEach: number; chunkSize: number; span: number }): Promise<GzipLayout> {
  const made = await makeTarLayer(dir, opts);
  const gz = `${made.file}.gz`;
  execFileSync('sh', ['-c', `gzip -6 -c '${made.file}' > '${gz}'`]);
  const scan = await scanLayer(createReadStream(gz), { compression: 'gzip', span: opts.span, chunkSize: opts.chunkSize });
  const layoutDir = path.join(dir, 'layout');
  await mkdir(path.join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(layoutDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await copyFile(gz, path.join(layoutDir, 'blobs', 'sha256', scan.digest.slice(7)));
  return { tar: await readFile(made.file), srcDir: path.join(dir, 'layer-src'), scan, layoutDir };
}
