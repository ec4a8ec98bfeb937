import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lineLogger } from '../../src/util/line-log.js';
import { ClipError } from '../../src/util/errors.js';
import { createLogger, type Logger } from '../../src/util/log.js';

const clipErr = new ClipError('ENETWORK', 'connection refused', { object: 'redis://h' });
const plainErr = new Error('plain failure');

/** The same calls through `log`, as parsed lines without their time. */
function lines(make: (fd: number) => Logger): Record<string, unknown>[] {
  const dir = mkdtempSync(join(tmpdir(), 'clip-line-log-'));
  try {
    const file = join(dir, 'log');
    const fd = openSync(file, 'w');
    const log = make(fd).child({ server: 7 }).child({ mountpoint: '/m' });
    log.info({ layer: 'sha256:ab', bytes: 12 }, 'fetched');
    log.debug('not written at info');
    log.warn({ err: clipErr }, 'remote cache unavailable');
    log.error(plainErr);
    log.info({ password: 'p', auth: { token: 't' }, headers: { authorization: 'Bearer x' } }, 'secrets');
    log.info('only a message');
    closeSync(fd);
    return readFileSync(file, 'utf8').trim().split('\n').map((l) => {
      const { time, ...rest } = JSON.parse(l) as Record<string, unknown>;
      expect(typeof time).toBe('number');
      return rest;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('line logger (the node server\'s, without pino)', () => {
  it('writes the lines pino writes: levels, bindings of its parents, fields, errors, redacted secrets', () => {
    const ours = lines((fd) => lineLogger('info', (l) => void writeSync(fd, l)));
    const pinos = lines((fd) => createLogger('info', fd, 'json'));
    expect(ours).toHaveLength(5);
    expect(ours).toEqual(pinos);
    expect(ours[3]).toMatchObject({ password: '[redacted]', auth: { token: '[redacted]' }, headers: { authorization: '[redacted]' } });
    expect(ours[1]).toMatchObject({ level: 40, server: 7, mountpoint: '/m', err: { type: 'ClipError', message: expect.stringContaining('connection refused'), code: 'ENETWORK' } });
  });

  it('keeps an error\'s cause (not enumerable) and writes BigInt fields as numbers, keeping the line\'s other fields', () => {
    const got: string[] = [];
    const log = lineLogger('info', (l) => void got.push(l));
    const inner = new Error('ECONNRESET from the registry');
    log.warn({ err: new ClipError('ETIMEOUT', 'chunk fetch failed', { object: 'sha256:ab', cause: inner }), offset: 5n, layer: 'sha256:ab' }, 'read failed');
    const rec = JSON.parse(got[0]!) as { err: { message: string; cause: { message: string; type: string } }; offset: number; layer: string };
    expect(rec.err.message).toContain('chunk fetch failed');
    expect(rec.err.cause).toMatchObject({ type: 'Error', message: 'ECONNRESET from the registry' });
    expect(rec.offset).toBe(5);
    expect(rec.layer).toBe('sha256:ab');
  });

  it('says which levels it writes, and writes nothing when silent', () => {
    const got: string[] = [];
    const log = lineLogger('warn', (l) => void got.push(l));
    expect(log.isLevelEnabled('info')).toBe(false);
    expect(log.isLevelEnabled('error')).toBe(true);
    log.info('no');
    log.warn('yes');
    lineLogger('silent', (l) => void got.push(l)).fatal('no');
    expect(got.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['yes']);
  });
});
