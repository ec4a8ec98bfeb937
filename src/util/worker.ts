import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread from a module URL. Under tests the module is a .ts file, which a bare
 * worker cannot load; `--import tsx` in a worker's execArgv does not take effect on Node 20, so the
 * worker starts from a small bootstrap that registers tsx's ESM hooks and then imports the module.
 * The built .js files run as they are.
 */
export function startWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, options);
  const bootstrap = `import { register } from ${JSON.stringify(tsxEsmApi().href)}; register(); await import(${JSON.stringify(moduleUrl.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`), options);
}

/** The ESM entry of `tsx/esm/api` (a data: URL module cannot resolve bare specifiers itself). */
function tsxEsmApi(): URL {
  const pkgPath = createRequire(import.meta.url).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
  const entry = pkg.exports['./esm/api']?.import.default ?? './dist/esm/api/index.mjs';
  return new URL(entry, pathToFileURL(pkgPath));
}

/** Resolve a sibling module of `from` with the extension `from` itself has (.ts under tests, .js built). */
export function siblingModule(from: string, name: string): URL {
  const ext = from.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, from);
}
