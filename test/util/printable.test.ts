import { describe, expect, it } from 'vitest';
import { printable } from '../../src/util/printable.js';

describe('printable', () => {
  it('writes every control character as \\xNN of its UTF-8 bytes and leaves the rest alone', () => {
    expect(printable('a\x1b[2Jb\0c\nd\te\x7ff\u0085g\u009bh')).toBe('a\\x1b[2Jb\\x00c\\x0ad\\x09e\\x7ff\\xc2\\x85g\\xc2\\x9bh');
    expect(printable('plain ünïcødé 名前 😀 back\\slash \\x41')).toBe('plain ünïcødé 名前 😀 back\\slash \\x41');
  });

  it('is idempotent, so text escaped once and shown again reads the same', () => {
    const once = printable('\x1b]0;title\x07');
    expect(printable(once)).toBe(once);
  });
});
