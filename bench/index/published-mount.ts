/**
 * An empty node mounts an image whose index is published (run by hand, as root, after `npm run build`):
 *   node --import tsx bench/index/published-mount.ts        RUNS=5 RATE_MB=100
 * The debian-python image (bench/images/debian-python.ts: debootstrap minbase + apt python3, two
 * gzip layers) is pushed to a real registry (docker-registry 2.8, which has no referrers API: the
 * tag schema is used) behind the throttle proxy of bench/coldstart (RATE_MB MB/s shared by all
 * responses, no added per-request latency: 0 ms RTT beyond loopback). A publisher runs
 * `clip index REF --push` once through the proxy. Then, RUNS rounds, the three arms in rotating
 * order, each from an empty cache directory with the page cache dropped:
 *   published:   `clip mount REF MNT --background --cache-dir EMPTY` (the index is discovered in the
 *                registry), `chroot MNT python3 -c 'import json'`, `clip unmount MNT`
 *   baseline:    `skopeo copy docker://REF oci:DIR:TAG`, `umoci unpack`, the same chroot
 *   no-discover: as published with `--no-discover`: the whole image is indexed here before the mount
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
import { baselineTrial, clip, clipTrial, median, seconds, sh, writeBetweenMarkers, type Trial } from '../coldstart/coldstart.js';
import { profileOf, requestTable } from '../coldstart/profile.js';
import { startThrottleProxy, type ServedRequest, type ThrottleProxy } from '../coldstart/throttle-proxy.js';
import { buildDebianPython, describeImage, type DebianPythonImage } from '../images/debian-python.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO_ROOT, '.tmp/bench-published-mount');
const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');
const RESULTS = fileURLToPath(new URL('RESULTS.md', import.meta.url));
const RUNS = Number(process.env.RUNS ?? 5);
const RATE_MB = Number(process.env.RATE_MB ?? 100);
const REPOSITORY = 'bench/debian-python';

type Arm = 'published' | 'baseline' | 'no-discover';
const ARMS: Arm[] = ['published', 'baseline', 'no-discover'];

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

function rowOf(arm: Arm, t: Trial, d: Digests): Row {
  const readyS = arm === 'baseline' ? t.secondS! : t.firstS;
  return {
    arm, run: t.run, readyS, totalS: t.totalS,
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
  return `| ${r.arm} | ${r.run} | ${s2(r.readyS)} | ${s2(r.totalS - r.readyS)} | ${s2(r.totalS)} | ${phases} | ${mb(all(r.toReady))} (${pct(all(r.toReady), img.compressedBytes)}) | ${kb(b.manifests + b.config)} | ${kb(b.index)} | ${mb(b.layers)} (${pct(b.layers, img.compressedBytes)}) | ${mb(b.distinctLayers)} (${pct(b.distinctLayers, img.compressedBytes)}) | ${b.requests} |`;
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
  const of = (arm: Arm): Row[] => rows.filter((r) => r.arm === arm);
  const summary = ARMS.map((arm) => {
    const rs = of(arm);
    const ready = rs.map((r) => all(r.toReady));
    return `| ${arm} | ${rs.length} | ${spread(rs.map((r) => r.readyS), s2)} | ${spread(rs.map((r) => r.totalS), s2)} | ${spread(ready, mb)} | ${pct(median(ready), img.compressedBytes)} | ${mb(median(rs.map((r) => all(r.total))))} | ${mb(median(rs.map((r) => r.total.distinctLayers)))} |`;
  });
  const pub = of('published');
  const ratio = (arm: Arm): string => {
    const other = of(arm);
    const med = median(other.map((r) => r.totalS)) / median(pub.map((r) => r.totalS));
    const pairs = pub.map((p) => other.find((o) => o.run === p.run)).map((o, i) => (o ? (o.totalS / pub[i]!.totalS).toFixed(1) : '-'));
    return `${med.toFixed(1)}x (per round: ${pairs.join(', ')})`;
  };
  const readyRatio = (arm: Arm): string => (median(of(arm).map((r) => r.readyS)) / median(pub.map((r) => r.readyS))).toFixed(1);
  const names = new Map<string, string>([[d.config, 'config'], [d.indexBlob, 'index (published)'], ...img.layers.map((l) => [l.digest, l.name] as [string, string])]);
  const last = pub.at(-1);
  return [
    `Command: \`${ctx.command}\` (as root, after \`npm run build\`)`,
    `Date: ${ctx.date}. Machine: 2 cores shared with other sessions. \`uptime\` before: \`${ctx.uptimeBefore}\`; after: \`${ctx.uptimeAfter}\`.`,
    `Proxy: ${RATE_MB} MB/s (10^6 bytes) shared by all responses, no added per-request latency (0 ms RTT beyond loopback). Registry: docker-registry 2.8 (no referrers API: the tag schema is used).`,
    `Runs: ${RUNS} rounds, the three arms in rotating order, each from an empty cache directory with the page cache dropped.`,
    '',
    `Image: ${describeImage(img)}`,
    '',
    `Published once: \`clip index REF --push --cache-dir PUBLISHER\` through the proxy took ${ctx.publishS.toFixed(1)} s (${mb(ctx.publishServed)} served). `
      + `Index ${ctx.indexBytes} bytes; pushed blob (gzip -9) ${ctx.indexBlobBytes} bytes, ${(ctx.indexBytes / ctx.indexBlobBytes).toFixed(2)}x smaller `
      + `(${pct(ctx.indexBlobBytes, ctx.indexBytes)} of the index, ${pct(ctx.indexBlobBytes, img.compressedBytes)} of the compressed image). Artifact ${ctx.artifact}.`,
    '',
    '| arm | runs | ready: median (min to max) | end of python: median (min to max) | bytes served to ready: median (min to max) | to ready, share of compressed image | bytes served in all (median) | layer bytes, distinct (median) |',
    '|---|---|---|---|---|---|---|---|',
    ...summary,
    '',
    `Ratio of medians to the end of python, baseline / published: **${ratio('baseline')}**; no-discover / published: **${ratio('no-discover')}**. `
      + `To ready: baseline / published ${readyRatio('baseline')}x, no-discover / published ${readyRatio('no-discover')}x.`,
    '',
    'Every trial ("ready" is the mount returning, or for the baseline copy + unpack; bytes are response bodies the proxy sent):',
    '',
    '| arm | run | ready | python | total | phases | bytes to ready (share of compressed) | manifests + config | index blob | layer bytes (share of compressed) | distinct layer bytes | requests |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => tableRow(r, img)),
    '',
    ...(last ? [`Every request of published run ${last.run} (ms since \`clip mount\` started):`, '', requestTable(last.served, names)] : []),
  ].join('\n');
}

const BEGIN = '<!-- published-mount:begin (written by published-mount.ts) -->';
const END = '<!-- published-mount:end -->';
const HEADING = `## An empty node mounts an image whose index is published

\`\`\`
node --import tsx bench/index/published-mount.ts        # RUNS=5 RATE_MB=100
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
  let proxy: ThrottleProxy | undefined;
  try {
    registry = await startRegistry();
    await pushLayout(img.layoutDir, img.tag, `${registry.host}/${REPOSITORY}:${img.tag}`);
    proxy = await startThrottleProxy(registry.host, { rateBytesPerSec: RATE_MB * 1e6 });
    const ref = `${proxy.host}/${REPOSITORY}:${img.tag}`;

    const publisher = path.join(scratch, 'publisher');
    proxy.reset();
    const t0 = performance.now();
    const out = JSON.parse(await clip('index', ref, '--push', '--cache-dir', publisher, '--json', '--no-progress')) as { published: string | null; indexBytes: number };
    const publishS = seconds(t0);
    const publishServed = proxy.served.reduce((n, r) => n + r.bytes, 0);
    await rm(publisher, { recursive: true, force: true });
    if (!out.published) throw new Error('clip index --push printed no artifact');
    const blob = await indexBlobOf(registry, out.published);
    console.log(`published in ${publishS.toFixed(1)} s: artifact ${out.published}, index ${out.indexBytes} bytes, blob ${blob.size} bytes`);
    const digests: Digests = { config: manifest.config.digest, layers: new Set(img.layers.map((l) => l.digest)), indexBlob: blob.digest };

    const rows: Row[] = [];
    for (let run = 1; run <= RUNS; run++) {
      // Rotate the order, so no arm always meets a machine another one just warmed.
      const order = ARMS.map((_, i) => ARMS[(i + run - 1) % ARMS.length]!);
      for (const arm of order) {
        const t = arm === 'baseline' ? await baselineTrial(run, proxy, ref, scratch)
          : await clipTrial(run, proxy, ref, scratch, arm === 'no-discover' ? ['--no-discover'] : []);
        const row = rowOf(arm, t, digests);
        rows.push(row);
        console.log(tableRow(row, img));
      }
    }
    const figures = report(img, rows, digests, {
      command: 'node --import tsx bench/index/published-mount.ts' + (process.env.RUNS ? ` (RUNS=${RUNS})` : '') + (process.env.RATE_MB ? ` (RATE_MB=${RATE_MB})` : ''),
      date, uptimeBefore, uptimeAfter: (await sh('uptime', [])).trim(), loadAfter: loadavg(),
      publishS, publishServed, indexBytes: out.indexBytes, indexBlobBytes: blob.size, artifact: out.published,
    });
    console.log(`\n${figures}`);
    await writeResults(figures);
    console.log(`\nwritten to ${RESULTS}`);
  } finally {
    await proxy?.stop();
    await registry?.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
