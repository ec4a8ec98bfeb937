/** Mount lifecycle: serve an image on a mountpoint, in the foreground or as a daemon, and unmount it. */
export { startMount, readyLine, requireRoot, type MountConfig, type RunningMount } from './serve.js';
export { runMount, type RunOptions } from './run.js';
export { startBackground, type BackgroundMount } from './background.js';
export { unmountMountpoint, type UnmountResult, type UnmountCommandOptions } from './unmount.js';
export { mountFiles, escapeMountpoint, daemonPid, type MountFiles } from './files.js';
