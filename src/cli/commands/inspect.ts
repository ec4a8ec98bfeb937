/** `clip inspect IMAGE`: its definition; the action is ../actions/inspect.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { InspectOptions } from '../actions/inspect.js';

export type { InspectLayer, InspectSummary } from '../actions/inspect.js';

/** Repeatable and comma separated, so that a host list never swallows the IMAGE argument. */
function collectHosts(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((h) => h.trim()).filter(Boolean)];
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show what an image resolves to: manifest digest, platform, config, layers')
    .argument('<image>', 'image reference (ubuntu, host:5000/repo:tag, repo@sha256:..., oci:DIR[:tag])')
    .option('--json', 'print a JSON object (with a "layers" array) instead of a table')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)')
    .option('--insecure-registry <host>', 'registry host to reach over plain HTTP; repeatable or comma separated (loopback hosts always are)', collectHosts, [])
    .action(async (image: string, opts: InspectOptions) => (await import('../actions/inspect.js')).inspectCommand(image, opts));
}
