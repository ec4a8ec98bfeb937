/** `clip cat IMAGE|INDEX PATH`: its definition; the action is ../actions/cat.ts, loaded when it runs. */
import type { Command } from 'commander';
import { addReadOptions, examples, type ReadCommandOptions } from '../read-options.js';

export function registerCat(program: Command): void {
  const cmd = program
    .command('cat')
    .description("print a file's content, fetching only its bytes (disk cache, shared cache, then the registry from the nearest checkpoint)")
    .argument('<image>', 'image reference or index file')
    .argument('<path>', 'path inside the image (symlinks are followed inside the image)');
  examples(cmd, ['clip cat ghcr.io/org/app:1.2 /etc/os-release', 'clip cat app.clip /usr/bin/tool --remote-cache redis://cache:6379 > tool']);
  addReadOptions(cmd, { json: false }).action(async (image: string, path: string, opts: ReadCommandOptions) => (await import('../actions/cat.js')).catCommand(image, path, opts));
}
