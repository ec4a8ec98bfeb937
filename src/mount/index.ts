/** Mount lifecycle: serve an image on a mountpoint in this process, and unmount it (background mounts: src/server). */
export { startMount, readyLine, requireRoot, type MountConfig, type RunningMount } from './serve.js';
export { runMount, type RunOptions } from './run.js';
export { unmountMountpoint, type UnmountResult, type UnmountCommandOptions } from './unmount.js';
export { mountFiles, escapeMountpoint, daemonPid, type MountFiles } from './files.js';
