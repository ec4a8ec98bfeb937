/**
 * `clip demo`: builds (or reuses) a runnable image from this machine's own files, with no network,
 * then shows clip using it: resolve it and list its layers, index it, and read a file lazily twice
 * (the first read comes from the image's blobs through the nearest checkpoint, the second from the
 * disk cache), counting the bytes each tier served.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { buildDemoImage, type DemoImage } from '../../demo/index.js';
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
export const DEMO_FILE = '/app/main.js';

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

export interface DemoMount {
  command: string[];
  output: string;
  seconds: number;
  /** Bytes each tier served while the program ran, from an empty cache. */
  byTier: Record<string, number>;
  imageUncompressedBytes: number;
}

async function tierBytes(snapshot: Promise<Record<string, number>>): Promise<Record<string, number>> {
  const s = await snapshot;
  return { disk: s['bytes.disk'] ?? 0, remote: s['bytes.remote'] ?? 0, source: s['bytes.source'] ?? 0 };
}

/** Mount the index with an empty cache and run the image's entrypoint from the mount under chroot. */
async function mountAndRun(indexFile: string, demoDir: string, command: string[], imageBytes: number): Promise<DemoReport['mount']> {
  if (process.getuid?.() !== 0) return { skipped: 'mounting needs root' };
  const cacheDir = join(demoDir, 'mount-cache');
  await rm(cacheDir, { recursive: true, force: true });
  const mountpoint = await mkdtemp(join(tmpdir(), 'clip-demo-mount-'));
  const started = Date.now();
  const running = await startMount({ image: indexFile, mountpoint, cacheDir });
  try {
    const { stdout } = await promisify(execFile)('chroot', [mountpoint, ...command], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      timeout: 60_000,
    });
    const seconds = (Date.now() - started) / 1000;
    return { command, output: stdout, seconds, byTier: await tierBytes(running.storage.metrics.snapshot()), imageUncompressedBytes: imageBytes };
  } finally {
    await running.stop();
    await rm(mountpoint, { recursive: true, force: true });
  }
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
  const imageBytes = image.layers.reduce((n, l) => n + l.uncompressedSize, 0);
  const mount = await mountAndRun(read.index.file, demoDir, command, imageBytes);
  return { image, seconds, inspect, ...read, mount };
}

function formatMount(r: DemoReport): string {
  const m = r.mount;
  if ('skipped' in m) return `\n(clip mount skipped: ${m.skipped})\n`;
  const fetched = m.byTier.source ?? 0;
  return [
    '',
    `$ clip mount ${r.index.file} MOUNT && chroot MOUNT ${m.command.join(' ')}`,
    ...m.output.trimEnd().split('\n').map((l) => `  | ${l}`),
    `  ran in ${m.seconds.toFixed(1)} s, starting with an empty cache`,
    `  fetched from the image's blobs (the source): ${formatSize(fetched)} of the image's ${formatSize(m.imageUncompressedBytes)} uncompressed`
      + ` (${((100 * fetched) / m.imageUncompressedBytes).toFixed(1)} %): what the program read, in whole 1 MiB chunks`,
    `  served again from the disk cache once fetched (the kernel re-reading pages): ${formatSize(m.byTier.disk ?? 0)}`,
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
    ...file.reads.map((d) => `  ${d.tier}: ${d.bytes} bytes; bytes per tier: ${tiers(d)}`),
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
      'Try it yourself (as root; `npm link` once puts clip on PATH, or use `npx clip` here):',
      '  mkdir -p /mnt/demo',
      `  clip mount ${image.ref} /mnt/demo --background`,
      `  chroot /mnt/demo ${[...(report.inspect.config.entrypoint ?? []), ...(report.inspect.config.cmd ?? [])].join(' ')}`,
      '  clip unmount /mnt/demo',
      '',
    ].join('\n'),
  );
}
