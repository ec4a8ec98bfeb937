/**
 * A preload (`--import`) that lists what a process loaded, for idle-floor.sh's `runtime` arm: on
 * SIGUSR2 it writes to $CLIP_BENCH_MODULES a JSON object with the node builtins the process loaded
 * (process.moduleLoadList, the public ones) and the files of other packages it loaded: CommonJS
 * ones from require's cache, ES modules as the loader resolved them (a resolve hook). clip's own
 * modules (under dist/) are left out: the list is of what a node needs before clip's code.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.CLIP_BENCH_MODULES;
if (!out) throw new Error('loaded-modules.mjs: set CLIP_BENCH_MODULES to the file to write');
const esmLog = `${out}.esm`;
// The resolve hook runs on the loader's own thread: it appends each URL to a file read at the signal.
const hook = `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) { const r = await next(spec, ctx); appendFileSync(${JSON.stringify(esmLog)}, r.url + '\\n'); return r; }`;
writeFileSync(esmLog, '');
register(`data:text/javascript,${encodeURIComponent(hook)}`);
const require = createRequire(import.meta.url);

process.on('SIGUSR2', () => {
  const builtins = process.moduleLoadList
    .filter((m) => m.startsWith('NativeModule ') && !m.includes('internal/'))
    .map((m) => m.slice('NativeModule '.length));
  const outside = (f) => !/\/dist\//.test(f) && !f.startsWith('node:') && !f.endsWith('/loaded-modules.mjs');
  const cjs = Object.keys(require.cache).filter(outside);
  const esm = [...new Set(readFileSync(esmLog, 'utf8').split('\n').filter(Boolean))].filter((u) => u.startsWith('file:') && outside(u));
  writeFileSync(out, JSON.stringify({ builtins, cjs, esm }, null, 1));
  appendFileSync(esmLog, '');
});
