/** The holder's pino-free log: pino's line shape, level filtering, errors with their message and code. */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { holderLog } from '../../src/server/holder-log.js';
import { ClipError } from '../../src/util/errors.js';

describe('holderLog', () => {
  let dir: string;
  let file: string;
  let fd: number;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-holder-log-'));
    file = join(dir, 'server.log');
    fd = openSync(file, 'a');
  });
  afterEach(async () => {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });
  const lines = (): Record<string, unknown>[] => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

  it('writes JSON lines as pino does, below the level nothing', () => {
    const log = holderLog('warn', { holder: 42 }, fd);
    log.info({ mounts: 1 }, 'not written');
    log.warn({ mounts: 2 }, 'holder: ignoring the signal');
    log.fatal('giving up');
    const [warn, fatal, ...rest] = lines();
    expect(rest).toEqual([]);
    expect(warn).toMatchObject({ level: 40, holder: 42, mounts: 2, msg: 'holder: ignoring the signal' });
    expect(typeof warn!.time).toBe('number');
    expect(fatal).toMatchObject({ level: 60, holder: 42, msg: 'giving up' });
  });

  it('gives errors their type, message and code; a pino-typed caller can use it', () => {
    const log = holderLog('info', { holder: 1 }, fd);
    log.error({ err: new ClipError('ENOTFOUND', 'no such mountpoint', { object: '/mnt/x' }) }, 'holder: attach failed');
    log.asLogger().info({ mountpoint: '/mnt/x' }, 'fuse: cleaned a stale mount');
    const [err, info] = lines();
    expect(err).toMatchObject({ level: 50, msg: 'holder: attach failed', err: { code: 'ENOTFOUND', message: expect.stringContaining('no such mountpoint') } });
    expect(info).toMatchObject({ level: 30, mountpoint: '/mnt/x', msg: 'fuse: cleaned a stale mount' });
  });

  it('a write that fails costs the line, not the process', () => {
    const log = holderLog('info', {}, 987654);
    expect(() => log.error('lost')).not.toThrow();
  });
});
