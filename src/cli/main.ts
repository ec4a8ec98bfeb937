#!/usr/bin/env node
// Every command is defined here with its options and help, but its action's module is loaded only
// when it runs: `clip --version` or `clip --help` loads no registry, storage or mount code. A
// command named first on the command line has only its own definition loaded (`clip run` starts
// sooner); anything else (help, a version, a mistyped command) loads every definition.
import { Command } from 'commander';
import { runCommand } from './exit.js';

type Register = (program: Command) => void;

/** The command definitions, in the order of the help, with the names each registers. */
const DEFINITIONS: Array<{ names: string[]; load: () => Promise<Register> }> = [
  { names: ['inspect'], load: async () => (await import('./commands/inspect.js')).registerInspect },
  { names: ['index'], load: async () => (await import('./commands/index.js')).registerIndex },
  { names: ['ls'], load: async () => (await import('./commands/ls.js')).registerLs },
  { names: ['stat'], load: async () => (await import('./commands/stat.js')).registerStat },
  { names: ['cat'], load: async () => (await import('./commands/cat.js')).registerCat },
  { names: ['extract'], load: async () => (await import('./commands/extract.js')).registerExtract },
  { names: ['mount', 'mounts', 'unmount', 'umount'], load: async () => (await import('./commands/mount.js')).registerMount },
  { names: ['server'], load: async () => (await import('./commands/server.js')).registerServer },
  { names: ['run'], load: async () => (await import('./commands/run.js')).registerRun },
  { names: ['profile'], load: async () => (await import('./commands/profile.js')).registerProfile },
  { names: ['bundle'], load: async () => (await import('./commands/bundle.js')).registerBundle },
  { names: ['cache'], load: async () => (await import('./commands/cache.js')).registerCache },
  { names: ['demo'], load: async () => (await import('./commands/demo.js')).registerDemo },
  { names: ['snapshotter'], load: async () => (await import('./commands/snapshotter.js')).registerSnapshotter },
];

const program = new Command('clip')
  .description('Lazy-loading container image filesystem: index an OCI image once, mount it, fetch only what is read.')
  .version('0.1.0')
  .showHelpAfterError();

const first = process.argv[2];
const named = DEFINITIONS.filter((d) => first !== undefined && d.names.includes(first));
for (const register of await Promise.all((named.length > 0 ? named : DEFINITIONS).map((d) => d.load()))) register(program);
if (first === 'demo' || named.length === 0) await (await import('./commands/demo.js')).describeDemoDefaults(program);

runCommand(() => program.parseAsync(process.argv));
