/** Running containers from lazily mounted images: `clip run`, `clip bundle`, and the shared image mounts under them. */
export { runContainer, type RunResult, FORWARDED_SIGNALS } from './run.js';
export { prepareContainer, teardownContainer, handOverToBundle, sweep, bundleContainer, type ContainerRequest, type PreparedContainer } from './container.js';
export { acquireImageMount, releaseImageMount, liveHolders, servingMount } from './image-mount.js';
export { servedImageNamed } from './image-names.js';
export { runPaths, containerPaths, imageMountPaths } from './paths.js';
export type { NetworkMode, Volume } from './spec.js';
