/**
 * Child process of index-bench.ts: load one index file in a fresh heap and measure load time,
 * memory, lookups and readdir. Run with --expose-gc. Prints one JSON line.
 */
import { ImageIndex } from '../../src/index/reader.js';
import { emptyAttr } from '../../src/index/types.js';
import { rng } from './synthetic.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const file = process.argv[2]!;

gc();
gc();
const before = process.memoryUsage();
const t0 = process.hrtime.bigint();
const index = await ImageIndex.open(file);
const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
gc();
gc();
const after = process.memoryUsage();

// Paths to look up, collected before timing (the walk allocates; lookups must not pay for it).
const all: string[] = [];
for (const { path } of index.walk()) all.push(path);
const rand = rng(7);
const sample = Array.from({ length: 200_000 }, () => all[Math.floor(rand() * all.length)]!);
let misses = 0;
const t1 = process.hrtime.bigint();
for (const p of sample) if (index.resolvePath(p) === 0) misses++;
const lookupSec = Number(process.hrtime.bigint() - t1) / 1e9;
if (misses > 0) throw new Error(`${misses} lookups missed`);

// FUSE-style lookup: (parent inode, name bytes) with the name already a Buffer, as /dev/fuse gives it.
const pairs: Array<[number, Buffer]> = [];
for (let i = 0; i < 200_000; i++) {
  const p = sample[i]!;
  if (p === '/') continue;
  const slash = p.lastIndexOf('/');
  pairs.push([index.resolvePath(p.slice(0, slash) || '/'), Buffer.from(p.slice(slash + 1))]);
}
const t2 = process.hrtime.bigint();
for (const [parent, name] of pairs) if (index.lookup(parent, name) === 0) misses++;
const lookupNameSec = Number(process.hrtime.bigint() - t2) / 1e9;

// readdir + getattr of every entry of every directory (what `ls -lR` asks of FUSE).
const attr = emptyAttr();
let listed = 0;
const t3 = process.hrtime.bigint();
for (let round = 0; round < 5; round++) {
  for (let ino = 1; ino <= index.inodeCount; ino++) {
    if (index.type(ino) !== 'dir') continue;
    index.readdir(ino, 0, (_name, child) => {
      index.getattr(child, attr);
      listed++;
    });
  }
}
const readdirSec = Number(process.hrtime.bigint() - t3) / 1e9;

console.log(JSON.stringify({
  entries: index.entryCount,
  inodes: index.inodeCount,
  fileBytes: index.buffer.length,
  loadMs,
  rssDelta: after.rss - before.rss,
  heapUsedDelta: after.heapUsed - before.heapUsed,
  externalDelta: after.external - before.external,
  resolvePathPerSec: sample.length / lookupSec,
  lookupPerSec: pairs.length / lookupNameSec,
  readdirEntriesPerSec: listed / readdirSec,
}));
