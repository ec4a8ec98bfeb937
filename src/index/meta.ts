/**
 * Filling ImageMeta from a resolved image. The shapes below are the fields of the oci module's
 * ResolvedImage and Layer the index needs, declared here so that index never imports oci; a
 * ResolvedImage satisfies them as it is.
 */
import type { LayerScan } from '../archive/types.js';
import type { ImageMeta, IndexedLayer, IndexPlatform, LayerCompression } from './types.js';

export interface ResolvedLayerLike {
  descriptor: { digest: string; size: number; mediaType: string };
  diffId: string;
  compression: LayerCompression;
}

export interface ResolvedImageLike {
  reference: string;
  location: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: IndexPlatform;
  configBytes: Buffer;
}

/** Everything of ImageMeta but the layers (for IndexBuilder). */
export function imageInfoOf(img: ResolvedImageLike): Omit<ImageMeta, 'layers'> {
  return {
    reference: img.reference, location: img.location, manifestDigest: img.manifestDigest,
    manifestMediaType: img.manifestMediaType, platform: img.platform, config: img.configBytes,
  };
}

/** A layer's index metadata: from the manifest, plus the uncompressed size its scan measured. */
export function indexedLayerOf(layer: ResolvedLayerLike, scan: Pick<LayerScan, 'uncompressedSize'>): IndexedLayer {
  return {
    digest: layer.descriptor.digest, diffId: layer.diffId, mediaType: layer.descriptor.mediaType,
    compression: layer.compression, compressedSize: layer.descriptor.size, uncompressedSize: scan.uncompressedSize,
  };
}
