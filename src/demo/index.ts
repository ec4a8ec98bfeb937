/** The demo image: a real, runnable image assembled from this machine's own files, with no network. */
export { buildDemoImage, defaultDemoDir, type DemoImage, type BuildDemoOptions } from './build.js';
export { planDemo, DEMO_TAG, DEMO_VERSION, APP_SCRIPT, type DemoPlan } from './plan.js';
export { parseLdd, sharedLibraries } from './ldd.js';
export { HostTree } from './host-tree.js';
