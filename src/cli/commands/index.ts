/** `clip index IMAGE`: its definition; the action is ../actions/index.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { IndexCommandOptions } from '../actions/index.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { addLogOptions, addRegistryOptions, examples } from '../read-options.js';

export function registerIndex(program: Command): void {
  const cmd = program
    .command('index')
    .description('read each layer once and write an index: where every file lives, and checkpoints for random access')
    .argument('<image>', 'image reference (ubuntu, host:5000/repo:tag, repo@sha256:..., oci:DIR[:tag])')
    .option('-o, --output <file>', 'write the index here too (it always goes to the cache directory)')
    .option('--span <size>', 'uncompressed bytes between gzip checkpoints, 64KiB to 1GiB (default 256KiB)')
    .option('--chunk-size <size>', 'bytes per verified chunk, a power of two from 4KiB to 64MiB (default 64KiB)')
    .option('--max-inflated <size>', 'refuse a layer that inflates to more than this (default 64GiB, at most 1TiB)')
    .option('--max-entries <count>', 'refuse a layer with more tar entries than this (default 4000000)')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)')
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--push', "push the index to the image's repository, as an OCI artifact referring to the image (docs/index-artifact.md)")
    .option('--remote-cache <url>', 'also store the index in this shared cache (redis://…), where other nodes look for it')
    .option('--force', 'read the image again even if its index is cached')
    .option('--no-progress', 'no progress display')
    .option('--json', 'print a JSON object instead of text');
  addLogOptions(addRegistryOptions(cmd));
  examples(cmd, [
    'clip index ghcr.io/org/app:1.2            index once; later commands find it in the cache',
    'clip index host:5000/app:1.2 --push       publish it next to the image, for every node',
    'clip index oci:./layout:latest -o app.clip',
  ]);
  cmd.action(async (image: string, opts: IndexCommandOptions) => (await import('../actions/index.js')).indexCommand(image, opts));
}
