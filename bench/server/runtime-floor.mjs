// idle-floor.sh's `runtime` arm: a node (forked like the server, an ES module like it) that loads
// what the idle server was seen to load besides clip's own code (loaded-modules.mjs's list,
// argv[2]), then waits, its heap collected and its arenas trimmed as the server's idle collector does.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setInterval, setTimeout } from 'node:timers';

const require = createRequire(import.meta.url);
const list = JSON.parse(readFileSync(process.argv[2], 'utf8'));
for (const b of list.builtins) require(`node:${b}`);
for (const f of list.cjs) require(f);
await Promise.all(list.esm.map((u) => import(u)));
setTimeout(() => {
  globalThis.gc?.();
  const koffi = list.cjs.find((f) => f.includes('/koffi/'));
  if (koffi) require(koffi).load('libc.so.6').func('int malloc_trim(size_t)')(0);
}, 2000);
setInterval(() => undefined, 1 << 30);
