/** The image index: overlay merge, the index file format, and in-place queries. */
export { OverlayMerger, mergeLayers, type MergedInode, type MergedNode, type MergedTree } from './merge.js';
export { IndexBuilder, buildIndex, serializeIndex, writeIndexFile, type LayerAccess } from './writer.js';
export { ImageIndex, type IndexImageInfo, type ReaddirVisitor } from './reader.js';
export * from './types.js';
export { imageInfoOf, indexedLayerOf, type ResolvedImageLike, type ResolvedLayerLike } from './meta.js';
