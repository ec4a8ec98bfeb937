/**
 * FUSE request latency: python calls getxattr on one file N times (each a GETXATTR round trip,
 * since the kernel caches no xattr answers), through an in-memory FUSE mount and on a local file.
 * Run as root: node --import tsx bench/mount/latency.ts      # CALLS=20000 RUNS=3
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mount } from '../../src/fuse/index.js';
import { MemFs } from '../../test/fuse/memfs.js';

const CALLS = Number(process.env.CALLS ?? 20_000);
const RUNS = Number(process.env.RUNS ?? 3);
const PROBE = `import os, sys, time
p, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    try: os.getxattr(p, "security.selinux")
    except OSError: pass
print((time.perf_counter() - t) / n * 1e6)`;

async function perCall(file: string): Promise<number> {
  const { stdout } = await promisify(execFile)('python3', ['-c', PROBE, file, String(CALLS)]);
  return Number(stdout.trim());
}

const dir = await mkdtemp(join(tmpdir(), 'clip-latency-'));
const local = join(dir, 'local');
await writeFile(local, 'x');
const mnt = join(dir, 'mnt');
await (await import('node:fs/promises')).mkdir(mnt);
const fs = new MemFs();
fs.file(1, 'f', Buffer.from('x'));
const m = await mount(fs, mnt, { entryTimeout: 60, attrTimeout: 60 });
try {
  console.log(`| run | through the mount | local file | ratio |\n|---|---|---|---|`);
  for (let run = 1; run <= RUNS; run++) {
    const through = await perCall(join(mnt, 'f'));
    const direct = await perCall(local);
    console.log(`| ${run} | ${through.toFixed(1)} µs | ${direct.toFixed(1)} µs | ${(direct / through).toFixed(3)}x |`);
  }
  console.log(`\n${CALLS} getxattr calls per figure; GETXATTR requests served: ${m.server.opCounts.get('GETXATTR')}`);
} finally {
  await m.unmount();
  await rm(dir, { recursive: true, force: true });
}
