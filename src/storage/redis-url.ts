/**
 * Remote cache addresses as operators write them:
 *   redis://[[user]:password@]host[:port][/db]   rediss:// for TLS
 *   redis+cluster://[[user]:password@]h1:p1,h2:p2   rediss+cluster:// for TLS
 */
import { ClipError } from '../util/errors.js';

export interface RedisEndpoint {
  host: string;
  port: number;
}

export interface RedisTarget {
  cluster: boolean;
  tls: boolean;
  nodes: RedisEndpoint[];
  username?: string;
  password?: string;
  db: number;
}

const SCHEMES: Record<string, { cluster: boolean; tls: boolean }> = {
  'redis:': { cluster: false, tls: false },
  'rediss:': { cluster: false, tls: true },
  'redis+cluster:': { cluster: true, tls: false },
  'rediss+cluster:': { cluster: true, tls: true },
};

function bad(url: string, why: string): ClipError {
  // The password never goes into an error message.
  return new ClipError('EINVAL', `bad remote cache URL: ${why} (use redis://host:port, rediss://, or redis+cluster://h1:p1,h2:p2)`, {
    object: url.replace(/\/\/[^@/]*@/, '//***@'),
  });
}

function endpoint(url: string, text: string): RedisEndpoint {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d+))?$/.exec(text);
  if (!m) throw bad(url, `bad host "${text}"`);
  const port = m[2] === undefined ? 6379 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(url, `bad port in "${text}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function parseRedisUrl(url: string): RedisTarget {
  const m = /^([a-z+]+:)\/\/(?:([^@/]*)@)?([^/?#]*)(?:\/(\d*))?\/?$/.exec(url.trim());
  if (!m) throw bad(url, 'not a URL');
  const scheme = SCHEMES[m[1]!];
  if (!scheme) throw bad(url, `unknown scheme ${m[1]}`);
  const hosts = m[3]!.split(',').filter((h) => h !== '');
  if (hosts.length === 0) throw bad(url, 'no host');
  if (!scheme.cluster && hosts.length > 1) throw bad(url, 'several hosts need redis+cluster://');
  const target: RedisTarget = { ...scheme, nodes: hosts.map((h) => endpoint(url, h)), db: m[4] ? Number(m[4]) : 0 };
  if (scheme.cluster && target.db !== 0) throw bad(url, 'a cluster has only database 0');
  if (m[2] !== undefined) {
    const colon = m[2].indexOf(':');
    const user = decodeURIComponent(colon < 0 ? '' : m[2].slice(0, colon));
    const password = decodeURIComponent(colon < 0 ? m[2] : m[2].slice(colon + 1));
    if (user) target.username = user;
    if (password) target.password = password;
  }
  return target;
}
