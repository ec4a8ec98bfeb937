/**
 * `clip cache stats` and `clip cache gc`: what the disk cache holds (per layer: size, chunks present,
 * last use), what each tier served over every process that used the directory, and eviction.
 */
import { resolve } from 'node:path';
import { cacheGc, cacheReport, defaultCacheDir, type CacheGcResult, type CacheReport } from '../../storage/index.js';
import { ClipError } from '../../util/errors.js';
import { formatSize, parseSize } from '../../util/size.js';
import { formatTable, printJson } from '../output.js';

const TIERS = ['disk', 'remote', 'source'] as const;
const TIER_COUNTERS = ['hits', 'misses', 'bytes', 'requests', 'verifyFailures', 'errors'] as const;

export interface TierTotals {
  hits: number;
  misses: number;
  bytes: number;
  requests: number;
  verifyFailures: number;
  errors: number;
}

/** The stats report as `--json` prints it. */
export interface CacheStatsJson {
  dir: string;
  layers: number;
  bytesOnDisk: number;
  rows: { diffId: string; size: number | null; bytesOnDisk: number; chunkSize: number | null; presentChunks: number | null; totalChunks: number | null; lastUse: string }[];
  tiers: Record<(typeof TIERS)[number], TierTotals>;
  singleflightJoins: number;
  evictions: number;
  evictedBytes: number;
  records: number;
}

export function statsJson(r: CacheReport): CacheStatsJson {
  const c = (k: string): number => r.counters[k] ?? 0;
  const tiers = Object.fromEntries(
    TIERS.map((t) => [t, Object.fromEntries(TIER_COUNTERS.map((k) => [k, c(`${k}.${t}`)])) as unknown as TierTotals]),
  ) as CacheStatsJson['tiers'];
  return {
    dir: r.dir,
    layers: r.layers,
    bytesOnDisk: r.bytes,
    rows: r.rows.map((l) => ({
      diffId: l.diffId,
      size: l.size ?? null,
      bytesOnDisk: l.bytes,
      chunkSize: l.chunkSize ?? null,
      presentChunks: l.presentChunks ?? null,
      totalChunks: l.totalChunks ?? null,
      lastUse: new Date(l.atimeMs).toISOString(),
    })),
    tiers,
    singleflightJoins: c('singleflightJoins'),
    evictions: c('evictions'),
    evictedBytes: c('evictedBytes'),
    records: r.records,
  };
}

export function formatStats(s: CacheStatsJson): string {
  const lines = [`cache ${s.dir}: ${s.layers} layer${s.layers === 1 ? '' : 's'}, ${formatSize(s.bytesOnDisk)} on disk`];
  if (s.rows.length) {
    lines.push(
      '',
      formatTable(
        ['LAYER (diff_id)', 'SIZE', 'ON DISK', 'CHUNKS PRESENT', 'LAST USE'],
        s.rows.map((r) => [
          r.diffId,
          r.size === null ? '?' : formatSize(r.size),
          formatSize(r.bytesOnDisk),
          r.presentChunks === null || r.totalChunks === null
            ? '?'
            : `${r.presentChunks}/${r.totalChunks} (${r.totalChunks ? Math.floor((100 * r.presentChunks) / r.totalChunks) : 100}%)`,
          r.lastUse.replace('T', ' ').slice(0, 19),
        ]),
      ),
    );
  }
  lines.push(
    '',
    `tiers (over ${s.records} record${s.records === 1 ? '' : 's'} of the processes that used this directory):`,
    formatTable(
      ['TIER', 'HITS (chunks)', 'MISSES', 'BYTES', 'REQUESTS', 'VERIFY FAILURES', 'ERRORS'],
      TIERS.map((t) => {
        const x = s.tiers[t];
        return [t, String(x.hits), String(x.misses), formatSize(x.bytes), String(x.requests), String(x.verifyFailures), String(x.errors)];
      }),
    ),
    `singleflight joins ${s.singleflightJoins}, evictions ${s.evictions} (${formatSize(s.evictedBytes)})`,
  );
  return `${lines.join('\n')}\n`;
}

export function formatGc(dir: string, r: CacheGcResult): string {
  const scans = r.scansEvicted ? ` and ${r.scansEvicted} layer scan${r.scansEvicted === 1 ? '' : 's'}` : '';
  const windows = r.windowsEvicted ? ` and ${r.windowsEvicted} windows file${r.windowsEvicted === 1 ? '' : 's'}` : '';
  return `cache ${dir}: evicted ${r.evicted} layer${r.evicted === 1 ? '' : 's'}${scans}${windows} (${formatSize(r.freedBytes)}), `
    + `${formatSize(r.remainingBytes)} remain; ${r.statsRecordsCompacted} stats records compacted`
    + `${r.staleIndexTempsRemoved ? `; ${r.staleIndexTempsRemoved} unfinished index files removed` : ''}\n`;
}

export async function cacheStatsCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const s = statsJson(await cacheReport(resolve(opts.cacheDir ?? defaultCacheDir())));
  if (opts.json) printJson(s);
  else process.stdout.write(formatStats(s));
}

export async function cacheGcCommand(opts: { cacheDir?: string; maxSize?: string; all?: boolean; json?: boolean }): Promise<void> {
  if (opts.all && opts.maxSize !== undefined) throw new ClipError('EINVAL', 'give --max-size or --all, not both');
  const maxBytes = opts.all ? 0 : opts.maxSize !== undefined ? parseSize(opts.maxSize) : Infinity;
  const dir = resolve(opts.cacheDir ?? defaultCacheDir());
  const r = await cacheGc(maxBytes, dir);
  if (opts.json) printJson({ dir, ...r });
  else process.stdout.write(formatGc(dir, r));
}
