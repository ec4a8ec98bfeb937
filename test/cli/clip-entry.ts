/** A `clip` process with this commands, its exit status set as src/cli/main.ts sets it. */
import { runCommand } from '../../src/cli/exit.js';
import { clipProgram } from './program.js';

runCommand(() => clipProgram().parseAsync(process.argv));
