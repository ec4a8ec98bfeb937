import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, humanLine, NeverFailingDestination } from '../../src/util/log.js';

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

  it('writes text lines for people, JSON for programs (auto: text only on a terminal)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clip-log-'));
    try {
      const write = (format: string): string => {
        const file = join(dir, `${format}.log`);
        const fd = openSync(file, 'w');
        createLogger('warn', fd, format).warn({ remote: 'redis://h:1', tier: 'remote', err: new Error('connection refused') }, 'remote cache unavailable: reading from the registry');
        closeSync(fd);
        return readFileSync(file, 'utf8');
      };
      expect(write('text')).toBe('WARN remote cache unavailable: reading from the registry remote=redis://h:1 tier=remote err="connection refused"\n');
      expect(JSON.parse(write('json'))).toMatchObject({ level: 40, tier: 'remote', msg: 'remote cache unavailable: reading from the registry' });
      expect(JSON.parse(write('auto'))).toMatchObject({ level: 40 }); // a file is not a terminal
      expect(humanLine('not json\n')).toBe('not json\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown level or format by name', () => {
    expect(() => createLogger('loud')).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('loud: not a log level') }));
    expect(() => createLogger('warn', 2, 'xml')).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('xml: not a log format') }));
  });
});
