/**
 * Sequential read of a 1 GB file through the mount, disk cache warm and page cache dropped, against
 * reading the same bytes from the disk cache's own layer file (run by hand, as root):
 *   node --import tsx bench/mount/seq-read.ts        SIZE_MB=1024 RUNS=3 BS=1M READAHEAD_KB=(default 8192)
 * The image (one uncompressed layer: compression does not matter once the disk cache is warm) is
 * built once under .tmp/bench-mount/. Drops the page cache between runs (echo 3 > drop_caches).
 */
import { execFileSync, execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { startMount } from '../../src/mount/serve.js';
import { seededContent, writeImage } from '../../src/oci/build/index.js';

const SIZE = Number(process.env.SIZE_MB ?? 1024) * 1024 * 1024;
const RUNS = Number(process.env.RUNS ?? 3);
const BS = process.env.BS ?? '1M';
const work = path.resolve('.tmp/bench-mount');
const layout = path.join(work, `seq-${SIZE}`);
const FILE = 'data/big.bin';
const execFileP = promisify(execFile);

function dropCaches(): void {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Seconds dd takes to read `count` bytes from `skip` (dd runs as a child: the server lives in this thread). */
async function ddSeconds(file: string, skip = 0, count?: number): Promise<number> {
  const args = [`if=${file}`, 'of=/dev/null', `bs=${BS}`, 'iflag=skip_bytes,count_bytes', `skip=${skip}`];
  if (count !== undefined) args.push(`count=${count}`);
  const started = process.hrtime.bigint();
  await execFileP('dd', args);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, drop_caches)');
  if (!existsSync(path.join(layout, 'index.json'))) {
    console.log(`building a ${SIZE / 2 ** 20} MiB image in ${layout} ...`);
    await rm(layout, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    await writeImage(layout, {
      tag: 'latest',
      layers: [{ compression: 'none', entries: [
        { type: 'dir', path: 'data', mtime: { sec: 1_700_000_000 } },
        { type: 'file', path: FILE, content: seededContent('bench/seq', SIZE, { compressible: 0.5 }), mtime: { sec: 1_700_000_000 } },
      ] }],
    });
  }
  const cacheDir = await mkdtemp(path.join(work, 'cache-'));
  const mnt = await mkdtemp(path.join(work, 'mnt-'));
  const running = await startMount({
    image: `oci:${layout}:latest`, mountpoint: mnt, cacheDir,
    ...(process.env.READAHEAD_KB ? { readaheadKb: Number(process.env.READAHEAD_KB) } : {}),
  });
  try {
    const index = running.image.index;
    const ino = index.resolvePathOrThrow(FILE);
    const loc = index.dataLocation(ino)!;
    const layerFile = running.storage.disk.pathOf(running.image.layers[loc.layer]!);
    console.log(`warming the disk cache: ${(await ddSeconds(path.join(mnt, FILE))).toFixed(1)} s`);
    const snap = await running.storage.metrics.snapshot();
    console.log(`  bytes from source ${snap['bytes.source']}, disk ${snap['bytes.disk']}; layer file ${layerFile}`);
    const rows: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      dropCaches();
      const viaMount = await ddSeconds(path.join(mnt, FILE));
      dropCaches();
      const direct = await ddSeconds(layerFile, loc.offset, loc.size);
      const mb = loc.size / 1e6;
      rows.push(`| ${i + 1} | ${(mb / viaMount).toFixed(0)} MB/s (${viaMount.toFixed(2)} s) | ${(mb / direct).toFixed(0)} MB/s (${direct.toFixed(2)} s) | ${(direct / viaMount).toFixed(2)}x |`);
      console.log(rows.at(-1));
    }
    console.log(`\nfile ${(loc.size / 2 ** 20).toFixed(0)} MiB, dd bs=${BS}, page cache dropped before each read\n`);
    console.log('| run | through the mount | cache file directly | ratio |\n|---|---|---|---|');
    console.log(rows.join('\n'));
  } finally {
    await running.stop();
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

await main();
