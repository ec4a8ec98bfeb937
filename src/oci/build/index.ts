/** The image builder: real OCI image layouts, written as streams, for fixtures, the demo and publishing. */
export { type LayerEntry, type FileContent, type EntryMeta, type Mtime, whiteout, opaque } from './entries.js';
export { seededStream, seededBytes, seededContent, type SeededOptions } from './content.js';
export { tarStream } from './tar.js';
export { compressor, type CompressOptions } from './compress.js';
export { writeLayer, type LayerSpec, type BuiltLayer } from './layer.js';
export { initLayout, tagInLayout, writeJsonBlob, REF_NAME } from './layout.js';
export { blobPath, writeBlobStream, writeBlobBytes, type BlobRef } from './blob.js';
export { writeImage, writeImageIndex, type ImageSpec, type BuiltImage, type BuiltIndex } from './image.js';
export { OCI, DOCKER, mediaTypes, layerMediaType, type MediaTypeFamily } from './media-types.js';
