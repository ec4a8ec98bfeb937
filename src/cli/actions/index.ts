/** `clip index IMAGE`: read every layer once and write the image's index file. */
import { openImage, parsePlatform } from '../../oci/index.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { indexImage } from '../../storage/indexer.js';
import { ClipError } from '../../util/errors.js';
import { createLogger } from '../../util/log.js';
import { formatSize, parseSize } from '../../util/size.js';
import { progressOf } from '../image-arg.js';
import { printJson } from '../output.js';
import { createProgress } from '../progress.js';

export interface IndexCommandOptions {
  output?: string;
  span?: string;
  chunkSize?: string;
  maxInflated?: string;
  maxEntries?: string;
  platform?: string;
  cacheDir?: string;
  insecureRegistry?: string[];
  logLevel?: string;
  json?: boolean;
  progress?: boolean;
}

export interface IndexReport {
  reference: string;
  manifestDigest: string;
  platform: string;
  /** The -o file, when given. */
  output: string | null;
  /** The copy in the cache directory. */
  cached: string | null;
  entries: number;
  inodes: number;
  layers: number;
  indexBytes: number;
  compressedBytes: number;
  uncompressedBytes: number;
  /** indexBytes / uncompressedBytes. */
  share: number;
  seconds: number;
}

function percent(x: number): string {
  return `${(100 * x).toFixed(x < 0.001 ? 3 : 2)} %`;
}

export function formatIndexReport(r: IndexReport): string {
  const where = [r.output, r.cached].filter((x): x is string => x !== null);
  return [
    `indexed ${r.reference} (${r.platform}) in ${r.seconds.toFixed(1)} s`,
    `  manifest  ${r.manifestDigest}`,
    ...where.map((w, i) => `  ${i === 0 ? 'index    ' : '         '} ${w}`),
    `  entries   ${r.entries} (${r.inodes} inodes) in ${r.layers} layer${r.layers === 1 ? '' : 's'}`,
    `  size      ${formatSize(r.indexBytes)}: ${percent(r.share)} of the image's ${formatSize(r.uncompressedBytes)} uncompressed`
      + ` (${percent(r.compressedBytes ? r.indexBytes / r.compressedBytes : 0)} of ${formatSize(r.compressedBytes)} stored)`,
    '',
  ].join('\n');
}

function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw new ClipError('EINVAL', `${flag} takes a whole number`, { object: text });
  return Number(text);
}

export async function indexCommand(image: string, opts: IndexCommandOptions): Promise<void> {
  const started = Date.now();
  const logger = createLogger(opts.logLevel);
  const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
  const source = openImage(image, { insecureRegistries: opts.insecureRegistry ?? [], logger });
  const progress = createProgress({ label: 'indexing', quiet: opts.progress === false, ...(opts.json ? { plain: true } : {}) });
  let stopped = false;
  const stopProgress = (): void => {
    if (!stopped) progress.stop();
    stopped = true;
  };
  try {
    const result = await indexImage(source, {
      cacheDir: opts.cacheDir ?? defaultCacheDir(),
      logger,
      onProgress: progressOf(progress),
      ...(platform ? { platform } : {}),
      ...(opts.output ? { output: opts.output } : {}),
      ...(opts.span ? { span: parseSize(opts.span) } : {}),
      ...(opts.chunkSize ? { chunkSize: parseSize(opts.chunkSize) } : {}),
      ...(opts.maxInflated ? { maxInflated: parseSize(opts.maxInflated) } : {}),
      ...(opts.maxEntries ? { maxEntries: parseCount(opts.maxEntries, '--max-entries') } : {}),
    });
    stopProgress();
    const { index, image: img } = result;
    const uncompressed = index.layers.reduce((n, l) => n + l.uncompressedSize, 0);
    const report: IndexReport = {
      reference: img.reference,
      manifestDigest: img.manifestDigest,
      platform: [img.platform.os, img.platform.architecture, img.platform.variant].filter(Boolean).join('/'),
      output: opts.output ?? null,
      cached: result.cachedAt ?? null,
      entries: index.entryCount,
      inodes: index.inodeCount,
      layers: index.layers.length,
      indexBytes: result.bytes.length,
      compressedBytes: index.layers.reduce((n, l) => n + l.compressedSize, 0),
      uncompressedBytes: uncompressed,
      share: uncompressed ? result.bytes.length / uncompressed : 0,
      seconds: (Date.now() - started) / 1000,
    };
    if (opts.json) printJson(report);
    else process.stdout.write(formatIndexReport(report));
  } finally {
    stopProgress();
    await source.close?.();
  }
}
