/** The demo image: a real, runnable image assembled from this machine's own files, with no network. */
export { buildDemoImage, defaultDemoDir, type DemoImage, type BuildDemoOptions } from './build.js';
export { planDemo, findPython, DEMO_TAG, DEMO_VERSION, APP_PATH, APP_SCRIPT, APP_CONFIG, DATA_FILES, DATA_FILE_BYTES, type DemoPlan } from './plan.js';
export { parseLdd, sharedLibraries } from './ldd.js';
export { HostTree } from './host-tree.js';
