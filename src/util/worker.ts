import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread from a module URL. Under tests the module is a .ts file, which a bare
 * worker cannot load, so it gets the tsx loader; the built .js files run as they are.
 */
export function startWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  const isTs = moduleUrl.pathname.endsWith('.ts');
  const execArgv = isTs ? [...(options.execArgv ?? []), '--import', 'tsx'] : options.execArgv;
  return new Worker(moduleUrl, { ...options, ...(execArgv ? { execArgv } : {}) });
}

/** Resolve a sibling module of `from` with the extension `from` itself has (.ts under tests, .js built). */
export function siblingModule(from: string, name: string): URL {
  const ext = from.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, from);
}
