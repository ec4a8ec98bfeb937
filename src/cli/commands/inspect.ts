/** `clip inspect IMAGE`: its definition; the action is ../actions/inspect.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { InspectOptions } from '../actions/inspect.js';
import { addLogOptions, addRegistryOptions, examples } from '../read-options.js';

export type { InspectLayer, InspectSummary } from '../actions/inspect.js';

export function registerInspect(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('show what an image resolves to: manifest digest, platform, config, layers')
    .argument('<image>', 'image reference (ubuntu, host:5000/repo:tag, repo@sha256:..., oci:DIR[:tag])')
    .option('--json', 'print a JSON object (with a "layers" array) instead of a table')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)');
  addLogOptions(addRegistryOptions(cmd));
  examples(cmd, ['clip inspect debian:bookworm', 'clip inspect oci:./layout:latest --json']);
  cmd.action(async (image: string, opts: InspectOptions) => (await import('../actions/inspect.js')).inspectCommand(image, opts));
}
