/** `clip ls IMAGE|INDEX [PATH]`: its definition; the action is ../actions/ls.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { LsOptions } from '../actions/ls.js';
import { addReadOptions, examples } from '../read-options.js';

export function registerLs(program: Command): void {
  const cmd = program
    .command('ls')
    .description('list a directory of the image (from the index; no layer is read)')
    .argument('<image>', 'image reference or index file')
    .argument('[path]', 'path inside the image', '/')
    .option('-l, --long', 'mode, links, owner, size, mtime')
    .option('-R, --recursive', 'list subdirectories too');
  examples(cmd, ['clip ls debian:bookworm /etc -l', 'clip ls app.clip / -R --json']);
  addReadOptions(cmd).action(async (image: string, path: string, opts: LsOptions) => (await import('../actions/ls.js')).lsCommand(image, path, opts));
}
