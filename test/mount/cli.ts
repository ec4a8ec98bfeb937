/**
 * `clip` with only the mount commands registered, as main.ts registers them: the tests run it as a
 * real process (it must not share the test runner's event loop with the FUSE server it starts).
 */
import { Command } from 'commander';
import { registerMount } from '../../src/cli/commands/mount.js';
import { registerServer } from '../../src/cli/commands/server.js';
import { isClipError } from '../../src/util/errors.js';

const program = new Command('clip').exitOverride((err) => {
  throw err;
});
registerMount(program);
registerServer(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`clip: ${isClipError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = isClipError(err) ? 1 : 2;
});
