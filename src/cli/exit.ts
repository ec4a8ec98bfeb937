/**
 * How a clip process ends: its exit status is its command's result. A ClipError is one line (exit
 * 1), anything else a stack (exit 2); and a command whose promise never settled, because the event
 * loop emptied while it still waited on something nothing would ever settle, exits 70 (EX_SOFTWARE)
 * with a line saying so, never 0 with its work unfinished.
 */
import { isClipError } from '../util/errors.js';
import { printable } from '../util/printable.js';

export const EXIT_UNFINISHED = 70;

/** The line(s) a failed command prints on stderr; names from an image inside it are escaped. */
export function errorReport(err: unknown): { text: string; code: number } {
  if (isClipError(err)) return { text: `clip: ${printable(err.message)}\n`, code: 1 };
  const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return { text: `clip: ${stack.split('\n').map(printable).join('\n')}\n`, code: 2 };
}

/** Run the command, and make the process's exit status say how it went. */
export function runCommand(command: () => Promise<unknown>): void {
  let settled = false;
  // Emitted when the event loop empties (not on an explicit exit, such as commander's after --help).
  process.on('beforeExit', () => {
    if (settled) return;
    settled = true;
    process.stderr.write('clip: internal error: the command stopped before it finished (it waited on something that never completed)\n');
    process.exitCode = EXIT_UNFINISHED;
  });
  command().then(
    () => {
      settled = true;
    },
    (err: unknown) => {
      settled = true;
      const { text, code } = errorReport(err);
      process.stderr.write(text);
      process.exitCode = code;
    },
  );
}
