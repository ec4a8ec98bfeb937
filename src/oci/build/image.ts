/**
 * Whole images in an OCI layout: layers, config (diff_ids, history, runtime settings), manifest in
 * OCI or Docker v2 schema 2 media types; and multi-platform indexes (Docker: manifest lists).
 */
import type { Descriptor, ImageConfig, Platform } from '../types.js';
import { writeLayer, type BuiltLayer, type LayerSpec } from './layer.js';
import { initLayout, tagInLayout, writeJsonBlob } from './layout.js';
import { mediaTypes, type MediaTypeFamily } from './media-types.js';

/** Fixed by default so that the same spec gives the same digests. */
const DEFAULT_CREATED = '2024-01-01T00:00:00Z';

export interface ImageSpec {
  platform?: Platform; // default linux/amd64
  layers: LayerSpec[];
  config?: NonNullable<ImageConfig['config']>;
  created?: string;
  mediaTypes?: MediaTypeFamily; // default oci
  annotations?: Record<string, string>;
  /** Tag it in index.json (org.opencontainers.image.ref.name). */
  tag?: string;
}

export interface BuiltImage {
  manifest: Descriptor; // carries the platform, for use in an index
  manifestBytes: Buffer;
  config: Descriptor;
  configBytes: Buffer;
  layers: BuiltLayer[];
  family: MediaTypeFamily;
}

export async function writeImage(layoutDir: string, spec: ImageSpec): Promise<BuiltImage> {
  const family = spec.mediaTypes ?? 'oci';
  const types = mediaTypes(family);
  const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
  const created = spec.created ?? DEFAULT_CREATED;
  await initLayout(layoutDir);

  const layers: BuiltLayer[] = [];
  for (const layer of spec.layers) layers.push(await writeLayer(layoutDir, layer, family)); // one at a time: bounded CPU and memory

  const imageConfig = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: spec.config ?? {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: spec.layers.map((l, i) => ({
      created,
      created_by: l.createdBy ?? `clip build: layer ${i + 1}`,
      ...(l.comment ? { comment: l.comment } : {}),
    })),
  };
  const config = await writeJsonBlob(layoutDir, types.config, imageConfig);
  const manifestDoc = {
    schemaVersion: 2,
    mediaType: types.manifest,
    config: config.descriptor,
    layers: layers.map((l) => l.descriptor),
    ...(spec.annotations && family === 'oci' ? { annotations: spec.annotations } : {}),
  };
  const manifest = await writeJsonBlob(layoutDir, types.manifest, manifestDoc);
  const built: BuiltImage = {
    manifest: { ...manifest.descriptor, platform },
    manifestBytes: manifest.bytes,
    config: config.descriptor,
    configBytes: config.bytes,
    layers,
    family,
  };
  if (spec.tag) await tagInLayout(layoutDir, manifest.descriptor, spec.tag);
  return built;
}

export interface BuiltIndex {
  descriptor: Descriptor;
  bytes: Buffer;
}

/** A multi-platform index over images already written to the same layout. */
export async function writeImageIndex(
  layoutDir: string,
  images: BuiltImage[],
  opts: { mediaTypes?: MediaTypeFamily; tag?: string; annotations?: Record<string, string> } = {},
): Promise<BuiltIndex> {
  const family = opts.mediaTypes ?? images[0]?.family ?? 'oci';
  const types = mediaTypes(family);
  const doc = {
    schemaVersion: 2,
    mediaType: types.index,
    manifests: images.map((img) => img.manifest),
    ...(opts.annotations && family === 'oci' ? { annotations: opts.annotations } : {}),
  };
  const { descriptor, bytes } = await writeJsonBlob(layoutDir, types.index, doc);
  if (opts.tag) await tagInLayout(layoutDir, descriptor, opts.tag);
  return { descriptor, bytes };
}
