/** A `clip` process with this commands, errors reported as src/cli/main.ts reports them. */
import { isClipError } from '../../src/util/errors.js';
import { clipProgram } from './program.js';

clipProgram().parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`clip: ${isClipError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = isClipError(err) ? 1 : 2;
});
