/** `clip cache stats|gc`: their definitions; the actions are ../actions/cache.ts, loaded when one runs. */
import type { Command } from 'commander';
import { defaultCacheDir } from '../../storage/cache-dir.js';

export type { CacheStatsJson, TierTotals } from '../actions/cache.js';

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect and collect the local disk cache')
    .addHelpText('after', '\nExamples:\n  $ clip cache stats\n  $ clip cache gc --max-size 20GiB\n  $ clip cache gc --all\n');
  cache
    .command('stats')
    .description('layers in the cache (size, chunks present, last use) and what each tier served, over all processes')
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--json', 'print JSON for scripts')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => (await import('../actions/cache.js')).cacheStatsCommand(opts));
  cache
    .command('gc')
    .description('evict least recently used layers (whole layers; reads in flight finish) and compact the stats records')
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--max-size <size>', 'evict until the cache holds at most this (e.g. 10GiB)')
    .option('--all', 'evict every layer')
    .option('--json', 'print JSON for scripts')
    .action(async (opts: { cacheDir?: string; maxSize?: string; all?: boolean; json?: boolean }) => (await import('../actions/cache.js')).cacheGcCommand(opts));
}
