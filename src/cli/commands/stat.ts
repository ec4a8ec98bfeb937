/** `clip stat IMAGE|INDEX PATH`: its definition; the action is ../actions/stat.ts, loaded when it runs. */
import type { Command } from 'commander';
import { addReadOptions, examples, type ReadCommandOptions } from '../read-options.js';

export function registerStat(program: Command): void {
  const cmd = program
    .command('stat')
    .description("one entry's metadata: type, mode, owner, size, mtime (ns), links, inode, layer and offset, xattrs")
    .argument('<image>', 'image reference or index file')
    .argument('<path>', 'path inside the image');
  examples(cmd, ['clip stat debian:bookworm /usr/bin/passwd --json']);
  addReadOptions(cmd).action(async (image: string, path: string, opts: ReadCommandOptions) => (await import('../actions/stat.js')).statCommand(image, path, opts));
}
