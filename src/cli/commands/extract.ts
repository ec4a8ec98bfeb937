/** `clip extract IMAGE|INDEX DIR`: its definition; the action is ../actions/extract.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { ExtractCommandOptions } from '../actions/extract.js';
import { addReadOptions, examples } from '../read-options.js';

export function registerExtract(program: Command): void {
  const cmd = program
    .command('extract')
    .description("write the image's root filesystem into DIR (which must be empty or absent): owners, modes, mtimes, xattrs, devices, hardlinks")
    .argument('<image>', 'image reference or index file')
    .argument('<dir>', 'target directory')
    .option('--no-same-owner', 'do not set owners or make devices (the default when not root)')
    .option('--no-progress', 'no progress display');
  examples(cmd, ['clip extract oci:./layout:latest ./rootfs']);
  addReadOptions(cmd).action(async (image: string, dir: string, opts: ExtractCommandOptions) => (await import('../actions/extract.js')).extractCommand(image, dir, opts));
}
