/** The media types an image is written with: OCI's own, or Docker's v2 schema 2 for older consumers. */
import type { Compression } from '../types.js';

export type MediaTypeFamily = 'oci' | 'docker';

export const OCI = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: {
    none: 'application/vnd.oci.image.layer.v1.tar',
    gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
    zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  },
} as const;

export const DOCKER = {
  index: 'application/vnd.docker.distribution.manifest.list.v2+json',
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: {

    none: 'application/vnd.docker.image.rootfs.diff.tar',
    gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    zstd: 'application/vnd.oci.image.layer.v1.tar+zstd', // Docker never defined one; builders use OCI's
  },
} as const;

export function mediaTypes(family: MediaTypeFamily): typeof OCI | typeof DOCKER {
  return family === 'oci' ? OCI : DOCKER;
}

export function layerMediaType(family: MediaTypeFamily, compression: Compression): string {
  return mediaTypes(family).layer[compression];
}
