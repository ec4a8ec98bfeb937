/** The logger a `clip run` command makes: pino only at info and below, where lines will be written. */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandLogger } from '../../src/cli/logger.js';
import { createLineLogger } from '../../src/util/log.js';
import { isClipError } from '../../src/util/errors.js';

describe('commandLogger', () => {
  it('is the line logger at warn and above, pino at info and below, and refuses a bad level or format naming it', () => {
    // pino's loggers carry its level table; the line logger does not.
    expect('levels' in commandLogger('warn', 'json')).toBe(false);
    expect('levels' in commandLogger('silent', 'auto')).toBe(false);
    expect('levels' in commandLogger('debug', 'json')).toBe(true);
    for (const [level, format] of [['loud', 'json'], ['warn', 'xml']] as const) {
      let err: unknown;
      try {
        commandLogger(level, format);
      } catch (e) {
        err = e;
      }
      expect(isClipError(err, 'EINVAL'), `${level} ${format}`).toBe(true);
      expect((err as Error).message).toContain(level === 'loud' ? 'loud' : 'xml');
    }
  });

  it('writes text lines to a person and JSON lines to a file, at its level only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'clip-cli-log-'));
    try {
      const file = join(dir, 'log');
      const fd = openSync(file, 'w');
      createLineLogger('warn', fd, 'text').child({ image: 'app' }).warn({ n: 1 }, 'as text');
      createLineLogger('warn', fd, 'json').info('below the level');
      createLineLogger('warn', fd, 'json').error({ err: new Error('boom') }, 'as json');
      closeSync(fd);
      const [text, json, ...rest] = readFileSync(file, 'utf8').split('\n');
      expect(text).toBe('WARN as text image=app n=1');
      expect(JSON.parse(json!)).toMatchObject({ level: 50, msg: 'as json', err: { type: 'Error', message: 'boom' } });
      expect(rest).toEqual(['']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
