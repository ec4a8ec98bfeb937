import { describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../../src/storage/redis-url.js';

describe('remote cache URLs', () => {
  it('reads a single server with password and database', () => {
    expect(parseRedisUrl('redis://:s3cret@cache.internal:6380/2')).toEqual({
      cluster: false,
      tls: false,
      nodes: [{ host: 'cache.internal', port: 6380 }],
      password: 's3cret',
      db: 2,
    });
  });

  it('defaults the port, knows TLS, users and IPv6', () => {
    expect(parseRedisUrl('rediss://alice:pw@[::1]')).toMatchObject({ tls: true, username: 'alice', password: 'pw', nodes: [{ host: '::1', port: 6379 }] });
    expect(parseRedisUrl('redis://127.0.0.1:7000/')).toMatchObject({ nodes: [{ host: '127.0.0.1', port: 7000 }], db: 0 });
  });

  it('reads a cluster seed list', () => {
    expect(parseRedisUrl('redis+cluster://h1:7000,h2:7001')).toMatchObject({
      cluster: true,
      nodes: [
        { host: 'h1', port: 7000 },
        { host: 'h2', port: 7001 },
      ],
    });
  });

  it('rejects what it cannot use, without echoing the password', () => {
    for (const bad of ['http://h:1', 'redis://', 'redis://h1:1,h2:2', 'redis://h:99999', 'redis+cluster://h:1/3', 'h:6379']) {
      expect(() => parseRedisUrl(bad), bad).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    try {
      parseRedisUrl('redis://:topsecret@h:1,h:2');
      expect.unreachable();
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('topsecret');
    }
  });
});
