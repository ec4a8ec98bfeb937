/** `clip demo`: its definition; the action is ../actions/demo.ts, loaded when it runs. */
import type { Command } from 'commander';
import type { DemoOptions } from '../actions/demo.js';

export type { DemoMount, DemoRead, DemoReport } from '../actions/demo.js';

const DIR_HELP = 'where the demo image is kept (default: $CLIP_DEMO_DIR or …)';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description("build (or reuse) a runnable image from this machine's own files, with no network, and show clip using it")
    .option('--dir <dir>', DIR_HELP)
    .option('--rebuild', 'build the image again even if an up-to-date one is there')
    .option('--json', 'print one JSON object instead of text')
    .action(async (opts: DemoOptions) => (await import('../actions/demo.js')).demoCommand(opts));
}

/**
 * Put the demo directory's default into `clip demo`'s help when the command line names the demo
 * (only then can its option help be printed): it comes from the demo's builder, a heavy module.
 * Up front, since `clip help demo` prints the help synchronously, past any hook.
 */
export async function describeDemoDefaults(program: Command, argv: readonly string[] = process.argv): Promise<void> {
  if (!argv.slice(2).includes('demo')) return;
  const dir = program.commands.find((c) => c.name() === 'demo')?.options.find((o) => o.long === '--dir');
  if (!dir) return;
  const { defaultDemoDir } = await import('../../demo/index.js');
  dir.description = DIR_HELP.replace('…', defaultDemoDir());
}
