#!/usr/bin/env node
// Every command is defined here with its options and help, but its action's module is loaded only
// when it runs: `clip --version` or `clip --help` loads no registry, storage or mount code.
import { Command } from 'commander';
import { registerBundle } from './commands/bundle.js';
import { registerCache } from './commands/cache.js';
import { registerCat } from './commands/cat.js';
import { describeDemoDefaults, registerDemo } from './commands/demo.js';
import { registerExtract } from './commands/extract.js';
import { registerIndex } from './commands/index.js';
import { registerInspect } from './commands/inspect.js';
import { registerLs } from './commands/ls.js';
import { registerMount } from './commands/mount.js';
import { registerProfile } from './commands/profile.js';
import { registerRun } from './commands/run.js';
import { registerServer } from './commands/server.js';
import { registerSnapshotter } from './commands/snapshotter.js';
import { registerStat } from './commands/stat.js';
import { runCommand } from './exit.js';

const program = new Command('clip')
  .description('Lazy-loading container image filesystem: index an OCI image once, mount it, fetch only what is read.')
  .version('0.1.0')
  .showHelpAfterError();

registerInspect(program);
registerIndex(program);
registerLs(program);
registerStat(program);
registerCat(program);
registerExtract(program);
registerMount(program);
registerServer(program);
registerRun(program);
registerProfile(program);
registerBundle(program);
registerCache(program);
registerDemo(program);
registerSnapshotter(program);
await describeDemoDefaults(program);

runCommand(() => program.parseAsync(process.argv));
