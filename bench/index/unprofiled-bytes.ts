/**
 * Where the layer bytes of an unprofiled cold start go (issue 12 item 3), run by hand as root after
 * `npm run build`:
 *   node --import tsx bench/index/unprofiled-bytes.ts        RUNS=1 RATE_MB=100 INDEX_ARGS=...
 * The debian-python image is pushed with its index published (`clip index --push INDEX_ARGS`); a
 * python profile is recorded locally (`clip profile`, not pushed) only to know what python reads.
 * Then an empty node mounts the image (no profile anywhere: demand reads only) behind the throttle
 * proxy (0 ms RTT) and runs `python3 -c 'import json'`. Each layer range request the proxy served
 * is split, in compressed bytes, into:
 *   needed:    what python's ranges take compressed (each end placed by linear interpolation
 *              between the index's checkpoints, as profiled-mount.ts computes "needed")
 *   before:    from the request's start to its first needed byte (inflated to reach it)
 *   after:     from its last needed byte to its end (the rest of the chunk and of the span)
 *   between:   unneeded bytes between two needed ranges inside one request
 *   unneeded:  requests with no needed byte at all (read-ahead, or the kernel's readahead past
 *              what the profile recorded)
 * and bytes fetched twice are counted apart. Prints a table per layer; writes nothing.
 *
 * Index format 4 publishes the checkpoint windows apart (docs/index-artifact.md): the mount
 * downloads the index blob without them, then each window by range on its checkpoint's first use;
 * those requests are reported on their own line. For an index of format 3 or older (a checkout of
 * an earlier clip) it prints instead the estimate session 9 made of that: the index blob without its
 * Windows section plus a 32-byte digest per checkpoint, and the windows of the checkpoints a layer
 * request started from. Run it with INDEX_ARGS="--span S --chunk-size C" for a grid.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageIndex } from '../../src/index/reader.js';
import { pushLayout } from '../../src/oci/push.js';
import { decodeProfile } from '../../src/profile/format.js';
import { cachedIndexPath } from '../../src/storage/indexer.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { clip, linkSettings, sh, syncAndDrop } from '../coldstart/coldstart.js';
import { startThrottleProxy, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-unprofiled-bytes');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RUNS = Number(process.env.RUNS ?? 1);
const { rateMb: RATE_MB, indexArgs: INDEX_ARGS } = linkSettings('0');
const PROGRAM = ['python3', '-c', 'import json'];
const REPO = 'bench/unprofiled-bytes';

type Span = [number, number];

const mb = (n: number): string => (n / 1e6).toFixed(2);

/** Merge sorted-or-not spans into disjoint sorted ones. */
function merge(spans: Span[]): Span[] {
  const out: Span[] = [];
  for (const s of [...spans].sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1);
    if (last && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else out.push([s[0], s[1]]);
  }
  return out;
}

const overlap = (a: Span, b: Span): number => Math.max(0, Math.min(a[1], b[1]) - Math.max(a[0], b[0]));

/** Python's ranges of layer l as compressed spans (interpolated between the index's checkpoints). */
function neededSpans(index: ImageIndex, l: number, ranges: { layer: number; offset: number; length: number }[]): Span[] {
  const layer = index.layers[l]!;
  const points: { out: number; in: number }[] = [{ out: 0, in: 0 }];
  for (let i = 0; i < index.checkpointCount(l); i++) {
    const p = index.checkpointPosition(l, i);
    if (p.out > points.at(-1)!.out) points.push({ out: p.out, in: p.in });
  }
  points.push({ out: layer.uncompressedSize, in: layer.compressedSize });
  const at = (o: number): number => {
    let k = 0;
    while (k + 1 < points.length - 1 && points[k + 1]!.out <= o) k++;
    const a = points[k]!;
    const b = points[k + 1]!;
    return b.out === a.out ? a.in : a.in + ((o - a.out) / (b.out - a.out)) * (b.in - a.in);
  };
  const un = merge(ranges.filter((r) => r.layer === l).map((r) => [r.offset, Math.min(r.offset + r.length, layer.uncompressedSize)] as Span));
  return un.map(([s, e]) => [Math.floor(at(s)), Math.ceil(at(e))] as Span);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  console.log(`uptime: ${(await sh('uptime', [])).trim()}; INDEX_ARGS="${INDEX_ARGS.join(' ')}"`);
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  let proxy: ThrottleProxy | undefined;
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPO}:${img.tag}`);
    proxy = await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: 0 });
    const ref = `${proxy.host}/${REPO}:${img.tag}`;
    const pub = path.join(scratch, 'publisher');
    const indexed = JSON.parse((await clip('index', ref, '--push', '--cache-dir', pub, '--no-progress', '--json', ...INDEX_ARGS)).trim()) as { indexBytes: number };
    const made = JSON.parse((await clip('profile', ref, '--cache-dir', pub, '--json', '--', ...PROGRAM)).trim().split('\n').at(-1)!) as { manifestDigest: string; file: string };
    const profile = decodeProfile(await readFile(made.file), made.file);
    const index = await ImageIndex.open(cachedIndexPath(pub, made.manifestDigest));
    console.log(`index ${indexed.indexBytes} bytes (${((indexed.indexBytes / img.uncompressedBytes) * 100).toFixed(2)} % of the uncompressed image); image ${img.compressedBytes} bytes compressed`);
    for (let run = 1; run <= RUNS; run++) {
      const cacheDir = await mkdtemp(path.join(scratch, 'cache-'));
      const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
      try {
        await syncAndDrop();
        proxy.reset();
        await clip('mount', ref, mnt, '--background', '--cache-dir', cacheDir);
        await sh('chroot', [mnt, ...PROGRAM]);
        await clip('unmount', mnt, '--cache-dir', cacheDir);
        const served = [...proxy.served];
        const indexBlob = served.filter((r) => /\/blobs\//.test(r.path) && !r.range).reduce((n, r) => n + r.bytes, 0);
        let all = 0;
        let windowsUsed = 0;
        let checkpointsUsed = 0;
        let checkpointsAll = 0;
        const rows: string[] = [];
        for (let l = 0; l < index.layers.length; l++) {
          const digest = index.layers[l]!.digest;
          const reqs = served.filter((r) => r.path.includes(digest) && r.range).map((r) => {
            const m = /bytes=(\d+)-(\d+)/.exec(r.range!)!;
            return [Number(m[1]), Number(m[1]) + r.bytes] as Span;
          });
          const need = neededSpans(index, l, profile.ranges);
          const starts = new Map<number, number>();
          for (let i = 0; i < index.checkpointCount(l); i++) {
            const p = index.checkpointPosition(l, i);
            starts.set(p.bits ? p.in - 1 : p.in, i);
          }
          checkpointsAll += starts.size;
          const used = new Set(reqs.map((q) => starts.get(q[0])).filter((i) => i !== undefined));
          checkpointsUsed += used.size;
          for (const i of used) windowsUsed += index.checkpointWindowBytes(l, i);
          const seen: Span[] = [];
          const t = { requests: reqs.length, bytes: 0, needed: 0, before: 0, after: 0, between: 0, unneeded: 0, twice: 0 };
          for (const q of reqs) {
            t.bytes += q[1] - q[0];
            t.twice += merge(seen).reduce((n, s) => n + overlap(s, q), 0);
            seen.push(q);
            const inside = need.map((s) => [Math.max(s[0], q[0]), Math.min(s[1], q[1])] as Span).filter((s) => s[1] > s[0]);
            if (!inside.length) {
              t.unneeded += q[1] - q[0];
              continue;
            }
            const got = inside.reduce((n, s) => n + s[1] - s[0], 0);
            t.needed += got;
            t.before += inside[0]![0] - q[0];
            t.after += q[1] - inside.at(-1)![1];
            t.between += inside.at(-1)![1] - inside[0]![0] - got;
          }
          all += t.bytes;
          const needAll = need.reduce((n, s) => n + s[1] - s[0], 0);
          rows.push(`| ${l} | ${t.requests} | ${mb(t.bytes)} | ${mb(t.needed)} (of ${mb(needAll)}) | ${mb(t.before)} | ${mb(t.after)} | ${mb(t.between)} | ${mb(t.unneeded)} | ${mb(t.twice)} |`);
        }
        console.log(`\nrun ${run}: layer bytes ${(all / 1e6).toFixed(2)} MB, index blob ${(indexBlob / 1e6).toFixed(2)} MB, served in all ${(served.reduce((n, r) => n + r.bytes, 0) / 1e6).toFixed(2)} MB = ${((served.reduce((n, r) => n + r.bytes, 0) / img.compressedBytes) * 100).toFixed(1)} % of the compressed image`);
        console.log('| layer | requests | MB | needed | before | after | between | unneeded | fetched twice |\n|---|---|---|---|---|---|---|---|---|');
        for (const r of rows) console.log(r);
        const blob = index.windowsBlob;
        if (blob) {
          const fetched = served.filter((r) => r.path.includes(blob.digest) && r.range);
          const bytes = fetched.reduce((n, r) => n + r.bytes, 0);
          const total = indexBlob + bytes;
          console.log(`windows by range: ${fetched.length} requests, ${mb(bytes)} MB (of ${mb(blob.size)} MB, ${checkpointsAll} checkpoints; ${checkpointsUsed} layer requests started at one); `
            + `index fetched ${mb(total)} MB (eager blob ${mb(indexBlob)} MB); index eager + every window ${mb(indexBlob + blob.size)} MB = ${(((indexBlob + blob.size) / img.uncompressedBytes) * 100).toFixed(2)} % of the uncompressed image`);
        } else {
          const eager = indexBlob - index.windowsBytes + 32 * checkpointsAll;
          const lazy = all + eager + windowsUsed;
          console.log(`lazy windows (estimate): eager index ${mb(eager)} MB (windows ${mb(index.windowsBytes)} MB of ${checkpointsAll} checkpoints left out), `
            + `${checkpointsUsed} windows fetched ${mb(windowsUsed)} MB; start ${mb(lazy)} MB = ${((lazy / img.compressedBytes) * 100).toFixed(1)} % of the compressed image`);
        }
      } finally {
        await rm(mnt, { recursive: true, force: true });
        await rm(cacheDir, { recursive: true, force: true });
      }
    }
  } finally {
    await proxy?.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
