import { closeSync, openSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createLogger, NeverFailingDestination } from '../../src/util/log.js';

describe('logger', () => {
  it('survives a log that cannot be written (a full disk), dropping lines instead of throwing', () => {
    const full = openSync('/dev/full', 'w'); // every write fails with ENOSPC
    try {
      const log = createLogger('info', full);
      for (let i = 0; i < 100; i++) log.info({ i }, 'a line nobody will read');
      log.error(new Error('and an error'));
      const dest = new NeverFailingDestination(full);
      dest.write('x\n');
      expect(dest.dropped).toBe(1);
    } finally {
      closeSync(full);
    }
  });
});
