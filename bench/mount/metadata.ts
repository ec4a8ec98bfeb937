/**
 * Metadata speed (run by hand, as root): `find DIR -type f | xargs stat` and `ls -lR DIR` on the
 * mount against the same on the tree `umoci unpack` extracted, page/dentry cache dropped (cold)
 * and right after (warm).
 *   node --import tsx bench/mount/metadata.ts        FILES=20000 RUNS=3
 * The image (FILES small files in nested directories, symlinks, one gzip layer) is built once under
 * .tmp/bench-mount/.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMount } from '../../src/mount/serve.js';
import { writeImage, type LayerEntry } from '../../src/oci/build/index.js';

const FILES = Number(process.env.FILES ?? 20_000);
const RUNS = Number(process.env.RUNS ?? 3);
const work = path.resolve('.tmp/bench-mount');
const layout = path.join(work, `meta-${FILES}`);
const execFileP = promisify(execFile);
const T = { sec: 1_700_000_000 };

function entries(): LayerEntry[] {
  const out: LayerEntry[] = [];
  const dirs = new Set<string>();
  for (let i = 0; i < FILES; i++) {
    const dir = `usr/lib/pkg-${i % 97}/sub-${i % 13}/d${i % 7}`;
    for (let d = dir; d !== '.' && !dirs.has(d); d = path.dirname(d)) dirs.add(d);
    if (i % 25 === 0) out.push({ type: 'symlink', path: `${dir}/link-${i}`, target: `file-${i}.py`, mtime: T });
    out.push({ type: 'file', path: `${dir}/file-${i}.py`, content: `# module ${i}\n`.repeat(1 + (i % 40)), mtime: T });
  }
  const dirEntries: LayerEntry[] = [...dirs].sort().map((d) => ({ type: 'dir', path: d, mtime: T }));
  return [...dirEntries, ...out];
}

function dropCaches(): void {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

async function seconds(script: string, dir: string): Promise<number> {
  const started = process.hrtime.bigint();
  await execFileP('sh', ['-c', script, 'sh', dir], { maxBuffer: 1 << 30 });
  return Number(process.hrtime.bigint() - started) / 1e9;
}

const WORKLOADS: Record<string, string> = {
  'find -type f | xargs stat': 'find "$1" -type f -print0 | xargs -0 stat > /dev/null',
  'ls -lR': 'ls -lR "$1" > /dev/null',
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, drop_caches)');
  if (!existsSync(path.join(layout, 'index.json'))) {
    console.log(`building an image of ${FILES} files in ${layout} ...`);
    await rm(layout, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    await writeImage(layout, { tag: 'latest', layers: [{ entries: entries() }] });
  }
  const scratch = await mkdtemp(path.join(work, 'meta-run-'));
  const extracted = path.join(scratch, 'bundle');
  await execFileP('umoci', ['unpack', '--image', `${layout}:latest`, extracted]);
  const mnt = path.join(scratch, 'mnt');
  await mkdir(mnt);
  const running = await startMount({ image: `oci:${layout}:latest`, mountpoint: mnt, cacheDir: path.join(scratch, 'cache') });
  const rows: string[] = [];
  try {
    for (const [name, script] of Object.entries(WORKLOADS)) {
      for (let i = 0; i < RUNS; i++) {
        const t: Record<string, number> = {};
        for (const [what, dir] of [['mount', mnt], ['extracted', path.join(extracted, 'rootfs')]] as const) {
          dropCaches();
          t[`${what} cold`] = await seconds(script, dir);
          t[`${what} warm`] = await seconds(script, dir);
        }
        const row = `| ${name} | ${i + 1} | ${t['mount cold']!.toFixed(2)} s | ${t['extracted cold']!.toFixed(2)} s | ${(t['extracted cold']! / t['mount cold']!).toFixed(2)}x | ${t['mount warm']!.toFixed(2)} s | ${t['extracted warm']!.toFixed(2)} s | ${(t['extracted warm']! / t['mount warm']!).toFixed(2)}x |`;
        console.log(row);
        rows.push(row);
      }
    }
    const ops = [...running.mount.server.opCounts].map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`\n${FILES} files (${running.image.index.entryCount} entries); FUSE requests over the whole run: ${ops}\n`);
    console.log('| workload | run | mount cold | extracted cold | ratio | mount warm | extracted warm | ratio |\n|---|---|---|---|---|---|---|---|');
    console.log(rows.join('\n'));
  } finally {
    await running.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
