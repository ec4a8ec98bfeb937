/**
 * `clip demo`: builds (or reuses) a runnable image from this machine's own files, with no network
 * (python3 with its standard library, and a data layer the program never reads), then shows clip
 * using it: resolve it and list its layers, index it, read a file lazily twice (first from the
 * image's blobs, then from the disk cache), and, as root, mount it from an empty cache and run its
 * program twice: what the first run needed of each layer, fetched from the image's blobs, and the
 * second run served from the disk cache.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { APP_PATH, buildDemoImage, type DemoImage } from '../../demo/index.js';
import { openImage } from '../../oci/index.js';
import { formatSize } from '../../util/size.js';
import { silentLogger } from '../../util/log.js';
import { openImageArg, openImageStorage } from '../../mount/open-image.js';
import { startMount } from '../../mount/serve.js';
import { formatTable, printJson } from '../output.js';
import { fileAt } from './cat.js';
import { formatSummary, summarize, type InspectSummary } from './inspect.js';

export interface DemoOptions {
  dir?: string;
  rebuild?: boolean;
  json?: boolean;
}

/** The file the demo reads through clip's read path. */
export const DEMO_FILE = APP_PATH;

export interface DemoRead {
  tier: string;
  bytes: number;
  /** Bytes served by each tier during this read. */
  byTier: Record<string, number>;
}

export interface DemoReport {
  image: DemoImage;
  seconds: number;
  inspect: InspectSummary;
  index: { file: string; entries: number; bytes: number; seconds: number; shareOfImage: number };
  file: { path: string; content: string; reads: DemoRead[] };
  /** The image mounted and its program run from the mount (root only; otherwise why it was skipped). */
  mount: DemoMount | { skipped: string };
}

/** One run of the image's program from the mount. */
export interface DemoRun {
  output: string;
  seconds: number;
  /** Bytes each tier served while the program ran (uncompressed). */
  byTier: Record<string, number>;
}

export interface DemoMount {
  command: string[];
  imageUncompressedBytes: number;
  imageStoredBytes: number;
  /** Per layer: its size, and what the first run (from an empty cache) fetched of it, in whole chunks. */
  layers: { name: string; diffId: string; uncompressedBytes: number; fetchedBytes: number }[];
  /** From an empty cache: what the program needed came from the image's blobs. */
  first: DemoRun;
  /** A new mount on the same cache: what the program needed came from the disk cache. */
  second: DemoRun;
}

async function tierBytes(snapshot: Promise<Record<string, number>>): Promise<Record<string, number>> {
  const s = await snapshot;
  return { disk: s['bytes.disk'] ?? 0, remote: s['bytes.remote'] ?? 0, source: s['bytes.source'] ?? 0 };
}

/** Mount the index and run the image's command from the mount under chroot, once. */
async function runOnce(indexFile: string, cacheDir: string, command: string[], after?: (running: Awaited<ReturnType<typeof startMount>>) => Promise<void>): Promise<DemoRun> {
  const mountpoint = await mkdtemp(join(tmpdir(), 'clip-demo-mount-'));
  const started = Date.now();
  const running = await startMount({ image: indexFile, mountpoint, cacheDir });
  try {
    const { stdout } = await promisify(execFile)('chroot', [mountpoint, ...command], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
      timeout: 60_000,
    });
    const seconds = (Date.now() - started) / 1000;
    const byTier = await tierBytes(running.storage.metrics.snapshot());
    await after?.(running);
    return { output: stdout, seconds, byTier };
  } finally {
    await running.stop();
    await rm(mountpoint, { recursive: true, force: true });
  }
}

/** Mount the index with an empty cache and run the program; then again, a new mount on that cache. */
async function mountAndRun(indexFile: string, demoDir: string, command: string[], image: DemoImage): Promise<DemoReport['mount']> {
  if (process.getuid?.() !== 0) return { skipped: 'mounting needs root' };
  const cacheDir = join(demoDir, 'mount-cache');
  await rm(cacheDir, { recursive: true, force: true });
  const fetched = new Map<string, number>();
  const first = await runOnce(indexFile, cacheDir, command, async (running) => {
    for (const row of await running.storage.disk.describe()) {
      if (row.presentChunks === undefined || row.chunkSize === undefined || row.size === undefined) continue;
      fetched.set(row.diffId, row.presentChunks === row.totalChunks ? row.size : Math.min(row.size, row.presentChunks * row.chunkSize));
    }
  });
  const second = await runOnce(indexFile, cacheDir, command);
  return {
    command,
    imageUncompressedBytes: image.layers.reduce((n, l) => n + l.uncompressedSize, 0),
    imageStoredBytes: image.layers.reduce((n, l) => n + l.size, 0),
    layers: image.layers.map((l, i) => ({ name: image.summary[i]?.name ?? String(i), diffId: l.diffId, uncompressedBytes: l.uncompressedSize, fetchedBytes: fetched.get(l.diffId) ?? 0 })),
    first,
    second,
  };
}

/** Index the image into a fresh cache of its own, then read DEMO_FILE twice through the tiers. */
async function indexAndRead(ref: string, demoDir: string): Promise<Pick<DemoReport, 'index' | 'file'>> {
  const cacheDir = join(demoDir, 'cache');
  await rm(cacheDir, { recursive: true, force: true });
  const started = Date.now();
  const img = await openImageArg(ref, { cacheDir, logger: silentLogger });
  try {
    const seconds = (Date.now() - started) / 1000;
    const uncompressed = img.index.layers.reduce((n, l) => n + l.uncompressedSize, 0);
    const indexBytes = img.index.buffer.length;
    const file = fileAt(img.index, DEMO_FILE);
    const storage = await openImageStorage(img, { logger: silentLogger });
    try {
      const reads: DemoRead[] = [];
      let content = '';
      for (const tier of ['first read', 'second read']) {
        const before = await tierBytes(storage.metrics.snapshot());
        const bytes = await storage.read(img.layers[file.layer]!, file.offset, file.size);
        const after = await tierBytes(storage.metrics.snapshot());
        const byTier = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
        reads.push({ tier, bytes: bytes.length, byTier });
        content = bytes.toString('utf8');
      }
      return {
        index: { file: img.indexFile ?? '', entries: img.index.entryCount, bytes: indexBytes, seconds, shareOfImage: indexBytes / uncompressed },
        file: { path: DEMO_FILE, content, reads },
      };
    } finally {
      await storage.close();
    }
  } finally {
    await img.close();
  }
}

export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const started = Date.now();
  const image = await buildDemoImage({ ...(opts.dir ? { dir: opts.dir } : {}), rebuild: opts.rebuild ?? false });
  const seconds = (Date.now() - started) / 1000;
  const source = openImage(image.ref);
  let inspect: InspectSummary;
  try {
    inspect = summarize(await source.resolve());
  } finally {
    await source.close?.();
  }
  const demoDir = dirname(image.layoutDir);
  const read = await indexAndRead(image.ref, demoDir);
  const command = [...(inspect.config.entrypoint ?? []), ...(inspect.config.cmd ?? [])];
  const mount = await mountAndRun(read.index.file, demoDir, command, image);
  return { image, seconds, inspect, ...read, mount };
}

const pct = (part: number, whole: number): string => `${whole ? ((100 * part) / whole).toFixed(1) : '0.0'} %`;

function formatMount(r: DemoReport): string {
  const m = r.mount;
  if ('skipped' in m) return `\n(clip mount skipped: ${m.skipped})\n`;
  const needed = m.first.byTier.source ?? 0;
  const unread = m.layers.filter((l) => l.fetchedBytes === 0).map((l) => l.name);
  return [
    '',
    `$ clip mount ${r.index.file} MOUNT      # a new, empty cache: no byte of the image's layers on this machine yet`,
    `$ chroot MOUNT ${m.command.join(' ')}`,
    ...m.first.output.trimEnd().split('\n').map((l) => `  | ${l}`),
    `  The image is ${formatSize(m.imageUncompressedBytes)} of files (${formatSize(m.imageStoredBytes)} as its compressed layers are stored).`,
    `  To run, the program needed ${formatSize(needed)} of it (${pct(needed, m.imageUncompressedBytes)}), fetched on demand from the image's`,
    '  layer blobs (here the local OCI layout, standing in for a registry), in whole chunks (64 KiB) around the',
    `  bytes it read; the rest was never fetched. It ran in ${m.first.seconds.toFixed(1)} s. Per layer:`,
    formatTable(
      ['LAYER', 'FILES (UNCOMPRESSED)', 'FETCHED FOR THE RUN', 'SHARE'],
      m.layers.map((l) => [l.name, formatSize(l.uncompressedBytes), formatSize(l.fetchedBytes), pct(l.fetchedBytes, l.uncompressedBytes)]),
    ).replace(/^/gm, '    '),
    ...(unread.length ? [`  Not one byte of ${unread.map((n) => `the ${n} layer`).join(' or ')} was fetched (the program lists /data, which the index answers, and reads none of it).`] : []),
    '',
    `$ clip mount ${r.index.file} MOUNT      # again: a new mount, the same cache`,
    `$ chroot MOUNT ${m.command.join(' ')}`,
    `  The same run fetched ${formatSize(m.second.byTier.source ?? 0)} from the image's blobs: the ${formatSize(m.second.byTier.disk ?? 0)} it read came from`,
    `  the disk cache the first run filled (it ran in ${m.second.seconds.toFixed(1)} s).`,
    '',
  ].join('\n');
}

function formatRead(r: DemoReport): string {
  const { index, file } = r;
  const tiers = (d: DemoRead) => Object.entries(d.byTier).map(([t, n]) => `${t} ${formatSize(n)}`).join(', ');
  return [
    '',
    `$ clip index ${r.image.ref}`,
    `  ${index.entries} entries, index ${formatSize(index.bytes)} (${(index.shareOfImage * 100).toFixed(2)} % of the uncompressed image), made in ${index.seconds.toFixed(1)} s`,
    `  ${index.file}`,
    '',
    `$ clip cat ${r.image.ref} ${file.path}`,
    ...file.content.trimEnd().split('\n').map((l) => `  | ${l}`),
    ...file.reads.map((d) => `  ${d.tier}: the file's ${d.bytes} bytes; ${d.tier === 'first read' ? 'from an empty cache, ' : ''}served by tier: ${tiers(d)}`),
    `  (source: fetched from the image's layer blobs, the whole chunk of up to 64 KiB holding the file; disk: the disk cache)`,
    '',
  ].join('\n');
}

function formatBuild(r: DemoReport): string {
  const { image } = r;
  const verb = image.reused ? 'reused the demo image (its inputs are unchanged)' : `built the demo image in ${r.seconds.toFixed(1)} s`;
  const rows = image.layers.map((l, i) => {
    const s = image.summary[i];
    const from = s && s.hostFiles.length ? `${s.entries} entries from ${s.hostFiles.length} host files (${s.hostFiles.slice(0, 3).join(', ')}${s.hostFiles.length > 3 ? ', ...' : ''})` : `${s?.entries ?? 0} entries`;
    return [s?.name ?? String(i), formatSize(l.size), formatSize(l.uncompressedSize), from];
  });
  return [
    `clip demo: ${verb}`,
    `  ${image.ref}`,
    '',
    formatTable(['LAYER', 'STORED', 'UNCOMPRESSED', 'CONTENT'], rows).replace(/^/gm, '  '),
    '',
  ].join('\n');
}

export async function demoCommand(opts: DemoOptions): Promise<void> {
  const report = await runDemo(opts);
  if (opts.json) {
    printJson(report);
    return;
  }
  const { image } = report;
  process.stdout.write(formatBuild(report));
  process.stdout.write(`\n$ clip inspect ${image.ref}\n`);
  process.stdout.write(formatSummary(report.inspect));
  process.stdout.write(formatRead(report));
  process.stdout.write(formatMount(report));
  process.stdout.write(
    [
      '',
      ...tryItYourself(report),
      '',
    ].join('\n'),
  );
}

/** The commands printed for the user to run: each works as printed (as root, clip on PATH). */
export function tryItYourself(report: Pick<DemoReport, 'image' | 'inspect'>): string[] {
  return [
    'Try it yourself (as root; `npm link` once puts clip on PATH, or use `npx clip` in this clone):',
    '  mkdir -p /mnt/demo',
    `  clip mount ${report.image.ref} /mnt/demo --background`,
    `  chroot /mnt/demo ${[...(report.inspect.config.entrypoint ?? []), ...(report.inspect.config.cmd ?? [])].join(' ')}`,
    '  clip cache stats      # chunks present per layer: what the run fetched',
    '  clip unmount /mnt/demo',
    `  clip run ${report.image.ref}      # the same program in a container (runc), its own writable layer`,
  ];
}
