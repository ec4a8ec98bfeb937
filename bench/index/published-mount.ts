/**
 * An empty node mounts an image whose index is published (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/index/published-mount.ts        RUNS=5 RATE_MB=100 RTTS=0,25 ARMS=...
 * The debian-python image (bench/images/debian-python.ts: debootstrap minbase + apt python3, two
 * gzip layers) is pushed to a real registry (docker-registry 2.8, which has no referrers API: the
 * tag schema is used) behind the throttle proxy of bench/coldstart (RATE_MB MB/s shared by all
 * responses), one proxy per round-trip time in RTTS (ms added to every request, and once more to a
 * new connection's first). A publisher runs `clip index REF --push` once through the first proxy.
 * Then, RUNS rounds; in each, for each RTT, the arms in rotating order, each from an empty cache
 * directory with the page cache dropped:
 *   published:   `clip mount REF MNT --background --cache-dir EMPTY` (the index is discovered in the
 *                registry), `chroot MNT python3 -c 'import json'`, `clip unmount MNT`
 *   no-merge:    as published with CLIP_FETCH_MERGE=0 in the daemon's environment: range fetches
 *                are not merged by checkpoint span (the behaviour before merging)
 *   baseline:    `skopeo copy docker://REF oci:DIR:TAG`, `umoci unpack`, the same chroot
 *   no-discover: as published with `--no-discover`: the whole image is indexed here before the mount
 *   cold-readahead (only when ARMS names it): as published with CLIP_COLD_READAHEAD_CHUNKS=4: a
 *                sequential reader's 4 read-ahead chunks fetched from the source too (the
 *                behaviour before; the default now takes read-ahead from the remote cache only)
 *   before (only when ARMS names it): both, CLIP_FETCH_MERGE=0 and CLIP_COLD_READAHEAD_CHUNKS=4:
 *                the read path as it was before issue 12
 * Prints a table and writes the figures into bench/index/RESULTS.md (between its markers).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushLayout } from '../../src/oci/push.js';
import { blobPath } from '../../src/oci/build/index.js';
import { startRegistry, type TestRegistry } from '../../test/support/registry.js';
import { baselineTrial, clip, clipTrial, linkSettings, median, seconds, sh, writeBetweenMarkers, type Trial } from '../coldstart/coldstart.js';
import { profileOf, requestTable } from '../coldstart/profile.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage, type DebianPythonImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-published-mount');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 5);
const { rateMb: RATE_MB, rtts: RTTS, indexArgs: INDEX_ARGS } = linkSettings('0,25');
const REPOSITORY = 'bench/debian-python';

type Arm = 'published' | 'no-merge' | 'baseline' | 'no-discover' | 'cold-readahead' | 'before';
const ALL_ARMS: Arm[] = ['published', 'no-merge', 'baseline', 'no-discover', 'cold-readahead', 'before'];
/** The default arms; cold-readahead and before only when ARMS names them. */
const DEFAULT_ARMS: Arm[] = ['published', 'no-merge', 'baseline', 'no-discover'];
const ARMS: Arm[] = process.env.ARMS ? (process.env.ARMS.split(',') as Arm[]).filter((a) => ALL_ARMS.includes(a)) : DEFAULT_ARMS;

/** Body bytes the proxy sent, by what was asked for. */
interface Bytes {
  /** Image manifest, referrers tag index, artifact manifest, the referrers API's 404 body. */
  manifests: number;
  config: number;
  /** The published index blob (gzip). */
  index: number;
  layers: number;
  /** Layer bytes counting each (blob, offset) once: ranges fetched twice count once. */
  distinctLayers: number;
  other: number;
  requests: number;
}

interface Row {
  arm: Arm;
  run: number;
  /** Round-trip time the proxy added, ms. */
  rtt: number;
  /** Client connections that carried the trial's requests. */
  connections: number;
  /** published / no-discover: `clip mount --background` returned; baseline: skopeo copy + umoci unpack done. */
  readyS: number;
  totalS: number;
  /** baseline: skopeo copy alone. */
  copyS?: number;
  daemonCpuS?: number;
  toReady: Bytes;
  total: Bytes;
  served: ServedRequest[];
}

interface Digests {
  config: string;
  layers: Set<string>;
  indexBlob: string;
}

function bytesOf(served: readonly ServedRequest[], d: Digests, untilMs = Infinity): Bytes {
  const b: Bytes = { manifests: 0, config: 0, index: 0, layers: 0, distinctLayers: 0, other: 0, requests: 0 };
  for (const r of served) {
    if (r.startMs > untilMs) continue;
    b.requests++;
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path)?.[1];
    if (r.path.includes('/manifests/') || r.path.includes('/referrers/')) b.manifests += r.bytes;
    else if (digest === d.config) b.config += r.bytes;
    else if (digest === d.indexBlob) b.index += r.bytes;
    else if (digest && d.layers.has(digest)) b.layers += r.bytes;
    else b.other += r.bytes;
  }
  const layerGets = served.filter((r) => r.startMs <= untilMs && d.layers.has(/\/blobs\/(sha256:[0-9a-f]{64})/.exec(r.path)?.[1] ?? ''));
  b.distinctLayers = layerGets.length ? profileOf(layerGets).distinctBlobBytes : 0;
  return b;
}

const all = (b: Bytes): number => b.manifests + b.config + b.index + b.layers + b.other;

function rowOf(arm: Arm, rtt: number, t: Trial, d: Digests): Row {
  const readyS = arm === 'baseline' ? t.secondS! : t.firstS;
  return {
    arm, run: t.run, rtt, connections: new Set(t.served.map((r) => r.connection)).size, readyS, totalS: t.totalS,
    ...(arm === 'baseline' ? { copyS: t.firstS } : {}),
    ...(t.daemonCpuS !== undefined ? { daemonCpuS: t.daemonCpuS } : {}),
    toReady: bytesOf(t.served, d, readyS * 1000), total: bytesOf(t.served, d), served: t.served,
  };
}

const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`;
const kb = (n: number): string => `${(n / 1e3).toFixed(1)} kB`;
const pct = (n: number, of: number): string => `${((100 * n) / of).toFixed(n / of < 0.01 ? 3 : 1)} %`;
const spread = (xs: number[], f: (x: number) => string): string => `${f(median(xs))} (${f(Math.min(...xs))} to ${f(Math.max(...xs))})`;
const s2 = (x: number): string => `${x.toFixed(2)} s`;

function tableRow(r: Row, img: DebianPythonImage): string {
  const b = r.total;
  const phases = r.arm === 'baseline'
    ? `copy ${s2(r.copyS!)}, unpack ${s2(r.readyS - r.copyS!)}`
    : `daemon CPU ${r.daemonCpuS?.toFixed(2) ?? '?'} s`;
  return `| ${r.rtt} ms | ${r.arm} | ${r.run} | ${s2(r.readyS)} | ${s2(r.totalS - r.readyS)} | ${s2(r.totalS)} | ${phases} | ${mb(all(r.toReady))} (${pct(all(r.toReady), img.compressedBytes)}) | ${kb(b.manifests + b.config)} | ${kb(b.index)} | ${mb(b.layers)} (${pct(b.layers, img.compressedBytes)}) | ${mb(b.distinctLayers)} (${pct(b.distinctLayers, img.compressedBytes)}) | ${b.requests} | ${r.connections} |`;
}

interface Context {
  command: string;
  date: string;
  uptimeBefore: string;
  uptimeAfter: string;
  loadAfter: number[];
  publishS: number;
  publishServed: number;
  indexBytes: number;
  indexBlobBytes: number;
  artifact: string;
}

function report(img: DebianPythonImage, rows: Row[], d: Digests, ctx: Context): string {
  const names = new Map<string, string>([[d.config, 'config'], [d.indexBlob, 'index (published)'], ...img.layers.map((l) => [l.digest, l.name] as [string, string])]);
  const perRtt = RTTS.flatMap((rtt) => {
    const of = (arm: Arm): Row[] => rows.filter((r) => r.arm === arm && r.rtt === rtt);
    const summary = ARMS.map((arm) => {
      const rs = of(arm);
      const ready = rs.map((r) => all(r.toReady));
      const served = rs.map((r) => all(r.total));
      return `| ${rtt} ms | ${arm} | ${rs.length} | ${spread(rs.map((r) => r.readyS), s2)} | ${spread(rs.map((r) => r.totalS), s2)} | ${spread(ready, mb)} | ${spread(served, mb)} | ${pct(median(served), img.compressedBytes)} | ${spread(rs.map((r) => r.total.layers), mb)} | ${mb(median(rs.map((r) => r.total.distinctLayers)))} | ${median(rs.map((r) => r.total.requests))} | ${median(rs.map((r) => r.connections))} |`;
    });
    const pub = of('published');
    const ratio = (arm: Arm): string => {
      const other = of(arm);
      if (!other.length || !pub.length) return '-';
      const med = median(other.map((r) => r.totalS)) / median(pub.map((r) => r.totalS));
      const pairs = pub.map((p) => other.find((o) => o.run === p.run)).map((o, i) => (o ? (o.totalS / pub[i]!.totalS).toFixed(1) : '-'));
      return `${med.toFixed(1)}x (per round: ${pairs.join(', ')})`;
    };
    const readyRatio = (arm: Arm): string => (of(arm).length && pub.length ? (median(of(arm).map((r) => r.readyS)) / median(pub.map((r) => r.readyS))).toFixed(1) : '-');
    return [
      ...summary,
      `RATIO ${rtt} ms RTT: time from \`clip mount\` to the end of python, ratio of medians (and per round), baseline / published: **${ratio('baseline')}**; before / published: **${ratio('before')}**; no-merge / published: ${ratio('no-merge')}; cold-readahead / published: ${ratio('cold-readahead')}; no-discover / published: ${ratio('no-discover')}. To ready: baseline / published ${readyRatio('baseline')}x, before / published ${readyRatio('before')}x.`,
    ];
  });
  const tables = perRtt.filter((l) => !l.startsWith('RATIO'));
  const ratios = perRtt.filter((l) => l.startsWith('RATIO')).map((l) => `- ${l.slice(6)}`);
  const lastOf = (arm: Arm, rtt: number): Row | undefined => rows.filter((r) => r.arm === arm && r.rtt === rtt).at(-1);
  const requestTables = RTTS.flatMap((rtt) => (['published', 'before'] as Arm[]).flatMap((arm) => {
    const last = lastOf(arm, rtt);
    return last ? [`Every request of ${arm} run ${last.run} at ${rtt} ms RTT (ms since \`clip mount\` started; conn: which client connection):`, '', requestTable(last.served, names), ''] : [];
  }));
  return [
    `Command: \`${ctx.command}\` (as root, after \`npm run build\`)`,
    `Date: ${ctx.date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${ctx.uptimeBefore}\`; after: \`${ctx.uptimeAfter}\`.`,
    `Proxy: ${RATE_MB} MB/s (10^6 bytes) shared by all responses; round-trip time added per request: ${RTTS.join(' and ')} ms (and once more for a new connection's first request). Registry: docker-registry 2.8 (no referrers API: the tag schema is used).`,
    `Runs: ${RUNS} rounds; in each, for each RTT, the arms (${ARMS.join(', ')}) in rotating order, each from an empty cache directory with the page cache dropped.`,
    '',
    `Image: ${describeImage(img)}`,
    '',
    `Published once: \`clip index REF --push --cache-dir PUBLISHER${INDEX_ARGS.length ? ` ${INDEX_ARGS.join(' ')}` : ''}\` through the proxy took ${ctx.publishS.toFixed(1)} s (${mb(ctx.publishServed)} served). `
      + `Index ${ctx.indexBytes} bytes; pushed blob (gzip -9) ${ctx.indexBlobBytes} bytes, ${(ctx.indexBytes / ctx.indexBlobBytes).toFixed(2)}x smaller `
      + `(${pct(ctx.indexBlobBytes, ctx.indexBytes)} of the index, ${pct(ctx.indexBlobBytes, img.compressedBytes)} of the compressed image). `
      + `Index ${pct(ctx.indexBytes, img.uncompressedBytes)} of the uncompressed image. Artifact ${ctx.artifact}.`,
    '',
    '| RTT | arm | runs | ready: median (min to max) | end of python: median (min to max) | bytes served to ready | bytes served in all | in all, share of compressed image (median) | layer bytes | layer bytes, distinct (median) | requests (median) | connections (median) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...tables,
    '',
    ...ratios,
    '',
    'Every trial ("ready" is the mount returning, or for the baseline copy + unpack; bytes are response bodies the proxy sent):',
    '',
    '| RTT | arm | run | ready | python | total | phases | bytes to ready (share of compressed) | manifests + config | index blob | layer bytes (share of compressed) | distinct layer bytes | requests | connections |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => tableRow(r, img)),
    '',
    ...requestTables,
  ].join('\n');
}

const BEGIN = '<!-- published-mount:begin (written by published-mount.ts) -->';
const END = '<!-- published-mount:end -->';
const HEADING = `## An empty node mounts an image whose index is published

\`\`\`
node --import tsx bench/index/published-mount.ts        # RUNS=5 RATE_MB=100 RTTS=0,25
\`\`\`
`;

async function writeResults(figures: string): Promise<void> {
  const old = existsSync(RESULTS) ? await readFile(RESULTS, 'utf8') : '# Index benchmarks\n';
  // The first run adds the section (heading, command, markers) after what the file holds.
  if (!old.includes(BEGIN)) await writeFile(RESULTS, `${old.trimEnd()}\n\n${HEADING}\n${BEGIN}\n${END}\n`);
  await writeBetweenMarkers(RESULTS, { begin: BEGIN, end: END, fresh: '' }, figures);
}

/** The artifact manifest's index blob, read from the registry itself (not through the proxy). */
async function indexBlobOf(registry: TestRegistry, artifact: string): Promise<{ digest: string; size: number }> {
  const res = await fetch(`http://${registry.host}/v2/${REPOSITORY}/manifests/${artifact}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  if (!res.ok) throw new Error(`artifact manifest ${artifact}: HTTP ${res.status}`);
  const m = (await res.json()) as { layers: Array<{ mediaType: string; digest: string; size: number }> };
  const blob = m.layers.find((l) => l.mediaType === 'application/vnd.clipfs.index.v1+gzip');
  if (!blob) throw new Error(`artifact ${artifact} has no index blob`);
  return blob;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, chroot, drop_caches)');
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const date = new Date().toISOString();
  const uptimeBefore = (await sh('uptime', [])).trim();
  const img = await buildDebianPython({ log: (line) => console.log(line) });
  console.log(`image ${img.reused ? 'reused' : 'built'}: ${describeImage(img)}`);
  const manifest = JSON.parse(await readFile(blobPath(img.layoutDir, img.manifestDigest), 'utf8')) as { config: { digest: string } };

  await mkdir(WORK, { recursive: true });
  const scratch = await mkdtemp(path.join(WORK, 'run-'));
  let registry: TestRegistry | undefined;
  const proxies = new Map<number, ThrottleProxy>();
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPOSITORY}:${img.tag}`);
    for (const rtt of RTTS) proxies.set(rtt, await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6, rttMs: rtt }));
    const proxy = proxies.get(RTTS[0]!)!;
    const refVia = (p: ThrottleProxy): string => `${p.host}/${REPOSITORY}:${img.tag}`;
    const ref = refVia(proxy);

    const publisher = path.join(scratch, 'publisher');
    proxy.reset();
    const t0 = performance.now();
    const out = JSON.parse(await clip('index', ref, '--push', '--cache-dir', publisher, '--json', '--no-progress', ...INDEX_ARGS)) as { published: string | null; indexBytes: number };
    const publishS = seconds(t0);
    const publishServed = proxy.served.reduce((n, r) => n + r.bytes, 0);
    await rm(publisher, { recursive: true, force: true });
    if (!out.published) throw new Error('clip index --push printed no artifact');
    const blob = await indexBlobOf(registry, out.published);
    console.log(`published in ${publishS.toFixed(1)} s: artifact ${out.published}, index ${out.indexBytes} bytes, blob ${blob.size} bytes`);
    const digests: Digests = { config: manifest.config.digest, layers: new Set(img.layers.map((l) => l.digest)), indexBlob: blob.digest };

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const [rtt, via] of proxies) {
        // Rotate the order, so no arm always meets a machine another one just warmed.
        const order = ARMS.map((_, i) => ARMS[(i + run - 1) % ARMS.length]!);
        for (const arm of order) {
          // The daemon inherits the environment of `clip mount`, which inherits this one.
          if (arm === 'no-merge' || arm === 'before') process.env.CLIP_FETCH_MERGE = '0';
          if (arm === 'cold-readahead' || arm === 'before') process.env.CLIP_COLD_READAHEAD_CHUNKS = '4';
          try {
            const t = arm === 'baseline' ? await baselineTrial(run, via, refVia(via), scratch)
              : await clipTrial(run, via, refVia(via), scratch, arm === 'no-discover' ? ['--no-discover'] : []);
            const row = rowOf(arm, rtt, t, digests);
            rows.push(row);
            console.log(tableRow(row, img));
          } finally {
            delete process.env.CLIP_FETCH_MERGE;
            delete process.env.CLIP_COLD_READAHEAD_CHUNKS;
          }
        }
      }
    }
    const figures = report(img, rows, digests, {
      command: 'node --import tsx bench/index/published-mount.ts' + (process.env.RUNS ? ` (RUNS=${RUNS})` : '') + (process.env.RATE_MB ? ` (RATE_MB=${RATE_MB})` : '') + (process.env.RTTS ? ` (RTTS=${process.env.RTTS})` : '') + (process.env.ARMS ? ` (ARMS=${process.env.ARMS})` : '') + (INDEX_ARGS.length ? ` (INDEX_ARGS="${INDEX_ARGS.join(' ')}")` : ''),
      date, uptimeBefore, uptimeAfter: (await sh('uptime', [])).trim(), loadAfter: loadavg(),
      publishS, publishServed, indexBytes: out.indexBytes, indexBlobBytes: blob.size, artifact: out.published,
    });
    console.log(`\n${figures}`);
    // WRITE=0: print only (variants such as other INDEX_ARGS, reported by hand).
    if (process.env.WRITE !== '0') {
      await writeResults(figures);
      console.log(`\nwritten to ${RESULTS}`);
    }
  } finally {
    for (const p of proxies.values()) await p.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
