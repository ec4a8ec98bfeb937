/**
 * What the node server's code loads before anything asks for it: no prom-client (it loads with a
 * metrics endpoint; the counters are plain numbers meanwhile), no registry client (undici), no zstd
 * decoder (fzstd builds its tables when loaded; it loads with a zstd layer's read) and no index
 * writer (only `clip cache gc` of the storage module uses it).
 * A fresh node with a module hook that lists every module it loads imports the server's modules,
 * counts, then builds a registry: prom-client must load then, and only then.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const HOOK = `export async function load(url, context, next) { process.stderr.write('LOADED ' + url + '\\n'); return next(url, context); }`;
const REGISTER = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));`;

describe('the node server loads only what serving needs', () => {
  it('imports neither prom-client, the registry client, fzstd nor the index writer with its modules; prom-client loads when a registry is asked for', () => {
    const code = `await import('./src/server/node-server.ts'); await import('./src/mount/serve.ts'); await import('./src/storage/index.ts');
      const { StorageMetrics } = await import('./src/storage/metrics.ts');
      const m = new StorageMetrics(); m.bytes.inc({ tier: 'disk' }, 5);
      process.stderr.write('ASKED\\n');
      const text = await (await m.registry()).metrics();
      console.log(text.includes('clip_storage_bytes_total{tier="disk"} 5') ? 'counted' : text);`;
    // tsx first: a hook registered later runs first, so this one sees every module.
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, '--input-type=module', '-e', code], {
      cwd: ROOT, encoding: 'utf8', timeout: 120_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe('counted');
    const lines = run.stderr.split('\n');
    const asked = lines.indexOf('ASKED');
    const before = lines.slice(0, asked).filter((l) => l.startsWith('LOADED '));
    expect(before.some((l) => l.endsWith('/src/server/node-server.ts'))).toBe(true);
    expect(before.filter((l) => /\/node_modules\/(prom-client|undici|fzstd)\//.test(l))).toEqual([]);
    expect(before.filter((l) => /\/src\/(index\/writer|archive\/zstd-decoder)\.ts$/.test(l))).toEqual([]);
    expect(before.some((l) => l.endsWith('/src/archive/random-access.ts')), 'the read path is loaded').toBe(true);
    expect(lines.slice(asked).some((l) => /\/node_modules\/prom-client\//.test(l))).toBe(true);
  });
});
