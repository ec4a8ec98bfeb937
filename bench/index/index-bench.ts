/**
 * Index benchmark: a synthetic 100k-entry image. Build (merge + serialise) here; load, memory,
 * lookups and readdir in a fresh child process so that the build's garbage does not blur them.
 *   node --import tsx bench/index/index-bench.ts [entries]
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildIndex } from '../../src/index/writer.js';
import { formatSize } from '../../src/util/size.js';
import { syntheticLayers } from './synthetic.js';

const here = dirname(fileURLToPath(import.meta.url));
const count = Number(process.argv[2] ?? 100_000);
const out = join(here, '../../.tmp/bench-index');
await mkdir(out, { recursive: true });

const { scans, meta } = syntheticLayers(count);
const tarEntries = scans.reduce((n, s) => n + s.entries.length, 0);
const t0 = process.hrtime.bigint();
const bytes = buildIndex(meta, scans);
const buildMs = Number(process.hrtime.bigint() - t0) / 1e6;
const file = join(out, `synthetic-${count}.clipindex`);
await writeFile(file, bytes);

const probe = join(here, 'load-probe.ts');
const runs = [0, 1, 2].map(() => JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', probe, file], { encoding: 'utf8' })));
const median = (k: string): number => runs.map((r) => r[k] as number).sort((a, b) => a - b)[1]!;
const r = runs[0]!;
const rows: Array<[string, string]> = [
  ['tar entries in (3 layers)', String(tarEntries)],
  ['merged entries / inodes', `${r.entries} / ${r.inodes}`],
  ['build (merge + serialise)', `${buildMs.toFixed(0)} ms`],
  ['index file size', `${formatSize(bytes.length)} (${(bytes.length / r.entries).toFixed(1)} B/entry)`],
  ['load (one read + sha256 + parse), median of 3', `${median('loadMs').toFixed(1)} ms`],
  ['RSS growth after load', formatSize(median('rssDelta'))],
  ['JS heap growth after load', formatSize(median('heapUsedDelta'))],
  ['external (Buffer) memory growth', formatSize(median('externalDelta'))],
  ['resolvePath (random existing paths)', `${Math.round(median('resolvePathPerSec')).toLocaleString('en')} /s`],
  ['lookup(parent, name bytes)', `${Math.round(median('lookupPerSec')).toLocaleString('en')} /s`],
  ['readdir + getattr', `${Math.round(median('readdirEntriesPerSec')).toLocaleString('en')} entries/s`],
];
for (const [k, v] of rows) console.log(`${k.padEnd(48)} ${v}`);
