/**
 * Learned checkpoints on the debian-python image (issue 12 item 2), run by hand as root:
 *   node --import tsx bench/index/learned-checkpoints.ts        RUNS=5 RATE_MB=100 RTTS=0,25 WRITE=1
 * The image (bench/images/debian-python.ts) is pushed to a real registry (docker-registry) behind
 * the throttle proxy of bench/coldstart (RATE_MB MB/s, RTT ms added per request), one proxy per
 * RTT; its index is published once (`clip index REF --push`). Every trial mounts REF in this
 * process (startMount, as the node's server does) from an empty cache directory with the page
 * cache dropped, runs `chroot MNT python3 -c 'import json'`, and unmounts. Arms, per round and RTT:
 *   capture   (node A): as a node does by default (learning on); its storage's learned
 *             checkpoints are kept for the next `learned` trial
 *   learned   (node B): with the last capture's learned checkpoints added to the storage right
 *             after the mount is made, before python reads (CLIP_LEARN=0, not that it would learn:
 *             a layer given checkpoints is not learned on)
 *   no-learn: CLIP_LEARN=0 (node B without them; and what learning costs node A)
 * CLIP_LEARN_PAKO=1 in the environment: node A learns with the pako inflater instead.
 * capture runs first in a round (learned needs it), the other two in rotating order. Figures:
 * layer bytes the proxy sent, time from startMount to python's exit, this process's CPU, and the
 * compressed bytes of what the mount was asked for (see neededBytes below).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { GzipInflater } from '../../src/archive/gzip-inflater.js';
import type { LearnedCheckpoint } from '../../src/archive/learned-checkpoint.js';
import { startMount } from '../../src/mount/serve.js';
import { blobPath } from '../../src/oci/build/index.js';
import { pushLayout } from '../../src/oci/push.js';
import type { LayerRecord } from '../../src/storage/types.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { clip, linkSettings, median, seconds, sh, syncAndDrop, writeBetweenMarkers } from '../coldstart/coldstart.js';
import { profileOf } from '../coldstart/profile.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage, PYTHON, type DebianPythonImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-learned');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 5);
const { rateMb: RATE_MB, rtts: RTTS, indexArgs: INDEX_ARGS } = linkSettings('0,25');
const REPOSITORY = 'bench/debian-python';
const PROGRAM = [PYTHON, '-c', 'import json'];

type Arm = 'capture' | 'learned' | 'no-learn';

interface Row {
  arm: Arm;
  run: number;
  rtt: number;
  readyS: number;
  totalS: number;
  cpuS: number;
  layerBytes: number;
  distinctLayerBytes: number;
  layerRequests: number;
  otherBytes: number;
  /** Learned checkpoints the storage had at the end (capture: to hand over), and their windows deflated. */
  learnedOut: number;
  learnedOutBytes: number;
  /** learned: how many were handed over. */
  learnedIn: number;
  /** What the mount was asked for: uncompressed bytes (union of read ranges), per layer digest. */
  asked: Map<string, [number, number][]>;
}

/** Every deflate block boundary of a layer: uncompressed offsets and compressed bit offsets. */
interface Boundaries {
  out: number[];
  inBits: number[];
}

async function boundariesOf(blob: Buffer): Promise<Boundaries> {
  const b: Boundaries = { out: [0], inBits: [0] };
  const g = new GzipInflater({ reuseOutput: true, onBoundary: (x) => { b.out.push(x.out); b.inBits.push(x.in * 8 - x.bits); } });
  for (let o = 0; o < blob.length; o += 1 << 20) g.write(blob.subarray(o, o + (1 << 20)), () => {});
  b.out.push(g.uncompressedOffset);
  b.inBits.push(blob.length * 8);
  return b;
}

/** Compressed bit position of uncompressed offset x: linear inside its block ('exact'), or the block's edge. */
function bitAt(b: Boundaries, x: number, mode: 'exact' | 'floor' | 'ceil'): number {
  let lo = 0;
  let hi = b.out.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (b.out[mid]! <= x) lo = mid;
    else hi = mid - 1;
  }
  const i = lo;
  if (mode === 'floor' || b.out[i] === x || i + 1 >= b.out.length) return b.inBits[i]!;
  if (mode === 'ceil') return b.inBits[i + 1]!;
  const f = (x - b.out[i]!) / (b.out[i + 1]! - b.out[i]!);
  return b.inBits[i]! + f * (b.inBits[i + 1]! - b.inBits[i]!);
}

/**
 * The compressed bytes of what the mount was asked for: for each layer, the union of the
 * uncompressed ranges read, each mapped to the compressed stream through the layer's deflate block
 * boundaries. 'exact': the bits in proportion inside the blocks at its ends (the compressed size
 * of just those bytes); 'blocks': whole blocks (what a deflate reader must fetch at least).
 */
function neededBytes(asked: Map<string, [number, number][]>, bounds: Map<string, Boundaries>, mode: 'exact' | 'blocks'): number {
  let bits = 0;
  for (const [digest, ranges] of asked) {
    const b = bounds.get(digest)!;
    if (mode === 'exact') {
      for (const [s, e] of ranges) bits += bitAt(b, e, 'exact') - bitAt(b, s, 'exact');
      continue;
    }
    // Whole blocks, each counted once though ranges share one.
    const blocks = union(ranges.map(([s, e]) => [bitAt(b, s, 'floor'), bitAt(b, e, 'ceil')] as [number, number]));
    for (const [s, e] of blocks) bits += e - s;
  }
  return bits / 8;
}

function union(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

async function trial(arm: Arm, run: number, rtt: number, proxy: ThrottleProxy, scratch: string, layers: Set<string>, handOver?: Map<string, LearnedCheckpoint[]>): Promise<{ row: Row; learned: Map<string, LearnedCheckpoint[]> }> {
  const cacheDir = await mkdtemp(path.join(scratch, 'cache-'));
  const mnt = await mkdtemp(path.join(scratch, 'mnt-'));
  if (arm !== 'capture') process.env.CLIP_LEARN = '0';
  try {
    await syncAndDrop();
    proxy.reset();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const m = await startMount({ image: `${proxy.host}/${REPOSITORY}:latest`, mountpoint: mnt, cacheDir });
    const readyS = seconds(t0);
    let learnedIn = 0;
    try {
      if (handOver) for (const layer of m.image.layers) learnedIn += m.storage.addLearnedCheckpoints(layer, handOver.get(layer.digest) ?? []);
      // What the mount is asked for (the program's reads and the kernel's read-ahead).
      const asked = new Map<string, [number, number][]>();
      const st = m.storage;
      const readInto = st.readInto.bind(st);
      st.readInto = (layer: LayerRecord, offset: number, target: Buffer, opts) => {
        let list = asked.get(layer.digest);
        if (!list) asked.set(layer.digest, (list = []));
        list.push([offset, Math.min(offset + target.length, layer.uncompressedSize)]);
        return readInto(layer, offset, target, opts);
      };
      await sh('chroot', [mnt, ...PROGRAM]);
      const totalS = seconds(t0);
      const cpu = process.cpuUsage(cpu0);
      const served: ServedRequest[] = [...proxy.served];
      const layerGets = served.filter((r) => layers.has(/\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path)?.[1] ?? ''));
      const learned = new Map<string, LearnedCheckpoint[]>();
      let learnedOut = 0;
      let learnedOutBytes = 0;
      for (const layer of m.image.layers) {
        const list = m.storage.learnedCheckpoints(layer);
        learned.set(layer.digest, list);
        learnedOut += list.length;
        // As a profile would carry them: 16 bytes of offsets and the window deflated.
        for (const c of list) learnedOutBytes += 16 + (c.window.length ? deflateRawSync(c.window).length : 0);
      }
      for (const [d, list] of asked) asked.set(d, union(list));
      const layerBytes = layerGets.reduce((n, r) => n + r.bytes, 0);
      return {
        learned,
        row: {
          arm, run, rtt, readyS, totalS, cpuS: (cpu.user + cpu.system) / 1e6,
          layerBytes, distinctLayerBytes: layerGets.length ? profileOf(layerGets).distinctBlobBytes : 0, layerRequests: layerGets.length,
          otherBytes: served.reduce((n, r) => n + r.bytes, 0) - layerBytes,
          learnedOut, learnedOutBytes, learnedIn, asked,
        },
      };
    } finally {
      await m.stop();
    }
  } finally {
    delete process.env.CLIP_LEARN;
    await rm(mnt, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`;
const s2 = (x: number): string => `${x.toFixed(2)} s`;
const spread = (xs: number[], f: (x: number) => string): string => `${f(median(xs))} (${f(Math.min(...xs))} to ${f(Math.max(...xs))})`;

function report(img: DebianPythonImage, rows: Row[], bounds: Map<string, Boundaries>, ctx: { date: string; uptimeBefore: string; uptimeAfter: string; command: string; indexBytes: number; uncompressed: number }): string {
  const arms: Arm[] = ['capture', 'learned', 'no-learn'];
  const lines: string[] = [
    `Command: \`${ctx.command}\` (as root)`,
    `Date: ${ctx.date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${ctx.uptimeBefore}\`; after: \`${ctx.uptimeAfter}\`.`,
    `Proxy: ${RATE_MB} MB/s shared by all responses; RTT added per request: ${RTTS.join(' and ')} ms. Registry: docker-registry 2.8. Index published with \`clip index --push${INDEX_ARGS.length ? ` ${INDEX_ARGS.join(' ')}` : ''}\` (${ctx.indexBytes} bytes, ${((100 * ctx.indexBytes) / ctx.uncompressed).toFixed(2)} % of the uncompressed image) and discovered by each mount.`,
    `Runs: one trial not counted (this process loads the read path), then ${RUNS} rounds; in each, per RTT, capture first, then learned and no-learn in rotating order; each trial an in-process mount (startMount) from an empty cache directory, page cache dropped.`,
    '',
    `Image: ${describeImage(img)}`,
    '',
    '| RTT | arm | runs | ready | end of python | CPU of the mount process | layer bytes (median, min to max) | share of compressed image | layer requests | other bytes (manifests, index) | learned checkpoints handed over / held at the end (deflated size) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const rtt of RTTS) {
    for (const arm of arms) {
      const rs = rows.filter((r) => r.arm === arm && r.rtt === rtt);
      if (!rs.length) continue;
      lines.push(`| ${rtt} ms | ${arm} | ${rs.length} | ${spread(rs.map((r) => r.readyS), s2)} | ${spread(rs.map((r) => r.totalS), s2)} | ${spread(rs.map((r) => r.cpuS), s2)} | ${spread(rs.map((r) => r.layerBytes), mb)} | ${((100 * median(rs.map((r) => r.layerBytes))) / img.compressedBytes).toFixed(1)} % | ${median(rs.map((r) => r.layerRequests))} | ${mb(median(rs.map((r) => r.otherBytes)))} | ${median(rs.map((r) => r.learnedIn))} / ${median(rs.map((r) => r.learnedOut))} (${mb(median(rs.map((r) => r.learnedOutBytes)))}) |`);
    }
  }
  lines.push('');
  for (const rtt of RTTS) {
    const of = (arm: Arm): Row[] => rows.filter((r) => r.arm === arm && r.rtt === rtt);
    const ratio = (a: Arm, b: Arm, f: (r: Row) => number): string => {
      const A = of(a);
      const B = of(b);
      if (!A.length || !B.length) return '-';
      const per = A.map((x) => B.find((y) => y.run === x.run)).map((y, i) => (y ? (f(A[i]!) / f(y)).toFixed(2) : '-'));
      return `${(median(A.map(f)) / median(B.map(f))).toFixed(2)}x (per round ${per.join(', ')})`;
    };
    const learned = of('learned');
    const asked = learned.map((r) => ({ r, exact: neededBytes(r.asked, bounds, 'exact'), blocks: neededBytes(r.asked, bounds, 'blocks'), raw: [...r.asked.values()].flat().reduce((n, [s, e]) => n + e - s, 0) }));
    lines.push(
      `- ${rtt} ms RTT: node B without / with learned checkpoints (no-learn / learned): layer bytes **${ratio('no-learn', 'learned', (r) => r.layerBytes)}**, end of python **${ratio('no-learn', 'learned', (r) => r.totalS)}**, CPU ${ratio('no-learn', 'learned', (r) => r.cpuS)}; `
        + `capture / learned: layer bytes ${ratio('capture', 'learned', (r) => r.layerBytes)}, end of python ${ratio('capture', 'learned', (r) => r.totalS)}; `
        + `what learning costs node A, capture / no-learn: time ${ratio('capture', 'no-learn', (r) => r.totalS)}, CPU ${ratio('capture', 'no-learn', (r) => r.cpuS)}, bytes ${ratio('capture', 'no-learn', (r) => r.layerBytes)}.`,
    );
    if (asked.length) {
      const exact = median(asked.map((a) => a.exact));
      const blocks = median(asked.map((a) => a.blocks));
      const fetched = median(learned.map((r) => r.layerBytes));
      lines.push(
        `- ${rtt} ms RTT, learned: the mount was asked for ${mb(median(asked.map((a) => a.raw)))} uncompressed (union of read ranges: python's reads and the kernel's read-ahead); `
          + `compressed, in proportion inside the deflate blocks at their ends: **${mb(exact)}**; in whole deflate blocks: ${mb(blocks)}. `
          + `Layer bytes fetched / compressed bytes read: **${(fetched / exact).toFixed(2)}x** (whole blocks: ${(fetched / blocks).toFixed(2)}x); goal ≤ 1.5x.`,
      );
    }
  }
  lines.push('', 'Every trial:', '', '| RTT | arm | run | ready | end of python | CPU | layer bytes | distinct | requests | learned in / out |', '|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) lines.push(`| ${r.rtt} ms | ${r.arm} | ${r.run} | ${s2(r.readyS)} | ${s2(r.totalS)} | ${s2(r.cpuS)} | ${mb(r.layerBytes)} | ${mb(r.distinctLayerBytes)} | ${r.layerRequests} | ${r.learnedIn} / ${r.learnedOut} |`);
  return lines.join('\n');
}

const BEGIN = '<!-- learned-checkpoints:begin (written by learned-checkpoints.ts) -->';
const END = '<!-- learned-checkpoints:end -->';

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, chroot, drop_caches)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const date = new Date().toISOString();
  const uptimeBefore = (await sh('uptime', [])).trim();
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  console.log(`image ${img.reused ? 'reused' : 'built'}: ${describeImage(img)}`);
  const bounds = new Map<string, Boundaries>();
  for (const l of img.layers) bounds.set(l.digest, await boundariesOf(await readFile(blobPath(img.layoutDir, l.digest))));
  const layers = new Set(img.layers.map((l) => l.digest));

  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  let indexBytes = 0;
  const proxies = new Map<number, ThrottleProxy>();
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPOSITORY}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const first = proxies.get(RTTS[0]!)!;
    const publisher = path.join(scratch, 'publisher');
    const out = JSON.parse(await clip('index', `${first.host}/${REPOSITORY}:${img.tag}`, '--push', '--cache-dir', publisher, '--json', '--no-progress', ...INDEX_ARGS)) as { indexBytes: number };
    await rm(publisher, { recursive: true, force: true });
    indexBytes = out.indexBytes;
    // One trial first, not counted: this process loads and compiles the read path then.
    await trial('no-learn', 0, RTTS[0]!, first, scratch, layers);

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const [rtt, proxy] of proxies) {
        const a = await trial('capture', run, rtt, proxy, scratch, layers);
        rows.push(a.row);
        const rest: Arm[] = run % 2 ? ['learned', 'no-learn'] : ['no-learn', 'learned'];
        for (const arm of rest) {
          const t = await trial(arm, run, rtt, proxy, scratch, layers, arm === 'learned' ? a.learned : undefined);
          rows.push(t.row);
        }
        for (const r of rows.slice(-3)) console.log(`${r.rtt} ms ${r.arm} run ${r.run}: ready ${s2(r.readyS)}, end ${s2(r.totalS)}, CPU ${s2(r.cpuS)}, layers ${mb(r.layerBytes)} in ${r.layerRequests} requests, learned in/out ${r.learnedIn}/${r.learnedOut}`);
      }
    }
    const figures = report(img, rows, bounds, {
      date, uptimeBefore, uptimeAfter: `${(await sh('uptime', [])).trim()}`, indexBytes, uncompressed: img.uncompressedBytes,
      command: `node --import tsx bench/index/learned-checkpoints.ts (RUNS=${RUNS} RATE_MB=${RATE_MB} RTTS=${RTTS.join(',')}${INDEX_ARGS.length ? ` INDEX_ARGS="${INDEX_ARGS.join(' ')}"` : ''})`,
    });
    console.log(`\n${figures}\nload ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    if (process.env.WRITE !== '0') {
      await writeBetweenMarkers(RESULTS, { begin: BEGIN, end: END, fresh: '' }, figures);
      console.log(`written to ${RESULTS}`);
    }
  } finally {
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
