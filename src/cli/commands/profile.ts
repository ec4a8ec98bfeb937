/** `clip profile IMAGE [--push] -- COMMAND ARGS...`: its definition; the action is ../actions/profile.ts. */
import type { Command } from 'commander';
import { addReadOptions, examples } from '../read-options.js';
import { addContainerOptions, type ContainerCommandOptions } from './run.js';

export interface ProfileCommandOptions extends ContainerCommandOptions {
  push?: boolean;
}

export function registerProfile(program: Command): void {
  const cmd = program
    .command('profile')
    .description('record what a command reads when it starts in the image (run in a container with runc) as the image\'s startup profile, which later mounts prefetch (as root)')
    .argument('<image>', 'image reference or index file')
    .argument('[command...]', "command and arguments, after --: replace the image's Cmd");
  addContainerOptions(cmd).option('--push', "also push the profile to the image's repository, as an artifact next to its index (docs/profiles.md)");
  examples(cmd, [
    "clip profile host:5000/app:1.2 -- python3 -c 'import json'",
    'clip profile --push --remote-cache redis://cache:6379 host:5000/app:1.2',
  ]);
  addReadOptions(cmd, { json: true }).action(async (image: string, command: string[], opts: ProfileCommandOptions) =>
    (await import('../actions/profile.js')).profileCommand(image, command, opts));
}
