/**
 * Small images made directly in tests (tar layers, config, manifest, OCI layout), so the oci tests
 * do not depend on the full fixture builder.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { sha256Digest } from '../../src/oci/digest.js';
import * as mt from '../../src/oci/media-types.js';
import type { Descriptor, Platform } from '../../src/oci/types.js';

export type Flavour = 'oci' | 'docker';

export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  for (const [name, content] of Object.entries(files)) {
    p.entry({ name, mode: 0o644, mtime: new Date(0) }, Buffer.from(content));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function compress(tar: Buffer, how: 'gzip' | 'zstd' | 'none'): Buffer {
  if (how === 'gzip') return gzipSync(tar);
  if (how === 'zstd') return execFileSync('zstd', ['-q', '-c'], { input: tar });
  return tar;
}

function layerType(flavour: Flavour, how: 'gzip' | 'zstd' | 'none'): string {
  if (flavour === 'docker') return mt.DOCKER_LAYER_GZIP;
  return how === 'gzip' ? mt.OCI_LAYER_GZIP : how === 'zstd' ? mt.OCI_LAYER_ZSTD : mt.OCI_LAYER;
}

/** Writes blobs and index.json of an OCI image layout. */
export class LayoutWriter {
  private readonly entries: Descriptor[] = [];

  constructor(readonly dir: string) {}

  async addBlob(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = sha256Digest(bytes);
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(this.dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.length };
  }

  tag(desc: Descriptor, tag: string): void {
    this.entries.push({ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } });
  }

  async save(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: this.entries }));
  }
}

export interface TestImage {
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
  /** Compressed layer blobs, in order. */
  layerBytes: Buffer[];
}

export interface ImageSpec {
  layers: Record<string, string | Buffer>[];
  flavour?: Flavour;
  compression?: 'gzip' | 'zstd' | 'none';
  platform?: Platform;
  env?: string[];
  entrypoint?: string[];
  cmd?: string[];
}

export async function writeImage(w: LayoutWriter, spec: ImageSpec): Promise<TestImage> {
  const flavour = spec.flavour ?? 'oci';
  const how = spec.compression ?? 'gzip';
  const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  const layerBytes: Buffer[] = [];
  for (const files of spec.layers) {
    const tar = await tarOf(files);
    diffIds.push(sha256Digest(tar));
    const blob = compress(tar, how);
    layerBytes.push(blob);
    layers.push(await w.addBlob(blob, layerType(flavour, how)));
  }
  const configJson = {
    architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: spec.env ?? ['PATH=/usr/bin'], Entrypoint: spec.entrypoint ?? ['/bin/sh'], Cmd: spec.cmd ?? ['-c', 'true'], WorkingDir: '/work', User: '1000:1000' },
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  const config = await w.addBlob(Buffer.from(JSON.stringify(configJson)), flavour === 'docker' ? mt.DOCKER_CONFIG : mt.OCI_CONFIG);
  const manifestType = flavour === 'docker' ? mt.DOCKER_MANIFEST : mt.OCI_MANIFEST;
  const manifestJson = { schemaVersion: 2, mediaType: manifestType, config, layers };
  const manifest = await w.addBlob(Buffer.from(JSON.stringify(manifestJson)), manifestType);
  return { manifest: { ...manifest, platform }, config, layers, diffIds, layerBytes };
}

/** An index (OCI or Docker manifest list) over images of several platforms. */
export async function writeIndex(w: LayoutWriter, images: TestImage[], flavour: Flavour = 'oci'): Promise<Descriptor> {
  const type = flavour === 'docker' ? mt.DOCKER_MANIFEST_LIST : mt.OCI_INDEX;
  const json = { schemaVersion: 2, mediaType: type, manifests: images.map((i) => i.manifest) };
  return w.addBlob(Buffer.from(JSON.stringify(json)), type);
}
