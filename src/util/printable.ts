/**
 * Text from an image (names, link targets, xattr names) made safe to print on a terminal: every
 * control character (C0 with NUL, newline and tab, DEL, C1) is written as its UTF-8 bytes in \xNN
 * form, the form non-UTF-8 bytes of names already take (archive/tar-path.ts shownBytes), so an
 * image cannot move the cursor, retitle the window, forge lines or hide text. Backslashes are left
 * alone: escaping is then idempotent, and a name shown twice over reads the same.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function printable(text: string): string {
  return text.replace(CONTROL, (c) => [...Buffer.from(c, 'utf8')].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join(''));
}
