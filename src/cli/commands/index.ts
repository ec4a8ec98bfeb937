/** `clip index IMAGE`: its definition; the action is ../actions/index.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { IndexCommandOptions } from '../actions/index.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';

export function registerIndex(program: Command): void {
  program
    .command('index')
    .description('read each layer once and write an index: where every file lives, and checkpoints for random access')
    .argument('<image>', 'image reference (ubuntu, host:5000/repo:tag, repo@sha256:..., oci:DIR[:tag])')
    .option('-o, --output <file>', 'write the index here too (it always goes to the cache directory)')
    .option('--span <size>', 'uncompressed bytes between gzip checkpoints (e.g. 2MiB)')
    .option('--chunk-size <size>', 'bytes per verified chunk (a power of two, e.g. 1MiB)')
    .option('--max-inflated <size>', 'refuse a layer that inflates to more than this (default 64GiB, at most 1TiB)')
    .option('--max-entries <count>', 'refuse a layer with more tar entries than this (default 4000000)')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)')
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--insecure-registry <host...>', 'registry hosts to reach over plain HTTP (loopback hosts always are)')
    .option('--log-level <level>', 'log level on stderr', process.env.CLIP_LOG_LEVEL ?? 'warn')
    .option('--no-progress', 'no progress display')
    .option('--json', 'print a JSON object instead of text')
    .action(async (image: string, opts: IndexCommandOptions) => (await import('../actions/index.js')).indexCommand(image, opts));
}
