/**
 * `clip bundle IMAGE DIR` and `clip bundle --remove DIR`: an OCI runtime bundle for any runtime
 * (DIR/config.json, and DIR/rootfs: the container's writable overlay on the shared image mount).
 */
import type { Command } from 'commander';
import { addReadOptions, examples } from '../read-options.js';
import { addContainerOptions, type ContainerCommandOptions } from './run.js';

export interface BundleCommandOptions extends ContainerCommandOptions {
  remove?: boolean;
}

export function registerBundle(program: Command): void {
  const cmd = program
    .command('bundle')
    .description('write an OCI runtime bundle of the image for any OCI runtime: DIR/config.json and DIR/rootfs, a writable overlay on the lazily mounted image (as root)')
    .argument('[image]', 'image reference or index file (with --remove: the bundle directory)')
    .argument('[dir]', 'bundle directory: made if missing, else it must be empty')
    .argument('[command...]', "command and arguments, after --: replace the image's Cmd");
  addContainerOptions(cmd).option('--remove', 'undo a bundle: unmount DIR/rootfs, remove config.json and the writable layer (delete the runtime\'s container first)');
  examples(cmd, [
    'clip bundle ghcr.io/org/app:1.2 /run/bundles/app && runc run -b /run/bundles/app app',
    'runc delete app && clip bundle --remove /run/bundles/app',
    'clip bundle app.clip /tmp/b --network host -- /bin/sh -c "echo hi"',
  ]);
  addReadOptions(cmd, { json: false }).action(async (image: string | undefined, dir: string | undefined, command: string[], opts: BundleCommandOptions) =>
    (await import('../actions/run.js')).bundleCommand(image, dir, command, opts));
}
