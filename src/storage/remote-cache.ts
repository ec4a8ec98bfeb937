/**
 * Tier 2: a shared chunk cache on Redis (a single server, Valkey, or a Redis Cluster). Keys are
 * content hashes (PREFIX + sha256 hex of the chunk), so identical chunks dedupe across layers and
 * images. Every value is verified against its key before any byte is trusted.
 *
 * The tier is optional and must never slow reads for long: every call has a deadline, commands are
 * never queued while disconnected, and a breaker skips Redis after a failure until a PING answers.
 */
import { createHash } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { ClipError } from '../util/errors.js';
import { Breaker } from './breaker.js';
import type { StorageMetrics } from './metrics.js';
import { PublishQueue, type PublishItem } from './publish-queue.js';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';

export interface RemoteCacheOptions {
  url: string;
  prefix?: string;
  /** Expire published chunks after this many seconds (default: never). */
  ttlSeconds?: number;
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  probeIntervalMs?: number;
  /** Consecutive failures that open the breaker. */
  failureThreshold?: number;
  maxQueueChunks?: number;
  maxQueueBytes?: number;
  publishConcurrency?: number;
  logger?: Logger;
  metrics?: StorageMetrics;
}

export const DEFAULT_PREFIX = 'clip:chunk:';

type Client = Redis | Cluster;

/** Remember keys known to be in Redis so a publisher does not ask again; bounded. */
class KeySet {
  private readonly keys = new Set<string>();
  constructor(private readonly max: number) {}
  has(k: string): boolean {
    return this.keys.has(k);
  }
  add(k: string): void {
    if (this.keys.size >= this.max) this.keys.delete(this.keys.values().next().value as string);
    this.keys.add(k);
  }
  delete(k: string): void {
    this.keys.delete(k);
  }
}

function makeClient(target: RedisTarget, o: Required<Pick<RemoteCacheOptions, 'commandTimeoutMs' | 'connectTimeoutMs'>>): Client {
  const common: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    commandTimeout: o.commandTimeoutMs,
    maxRetriesPerRequest: 1,
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
  };
  const retry = (times: number): number => Math.min(100 * times, 2000);
  if (target.cluster) {
    return new Cluster(target.nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: retry,
      slotsRefreshTimeout: o.connectTimeoutMs,
      redisOptions: common,
    });
  }
  const node = target.nodes[0]!;
  return new Redis({ ...common, host: node.host, port: node.port, db: target.db, enableOfflineQueue: false, retryStrategy: retry });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new ClipError('ETIMEOUT', `${what} took over ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class RedisChunkCache {
  readonly prefix: string;
  private readonly client: Client;
  private readonly breaker: Breaker;
  private readonly queue: PublishQueue;
  private readonly present = new KeySet(100_000);
  /** Keys whose value failed verification: the next publish replaces them. */
  private readonly bad = new KeySet(10_000);
  private readonly log: Logger;
  private readonly metrics: StorageMetrics | undefined;
  private readonly timeoutMs: number;
  private readonly ttlSeconds: number | undefined;
  private readonly safeUrl: string;
  /** The client's last connection error, for the warning when the breaker opens. */
  private lastError: string | undefined;

  private constructor(opts: RemoteCacheOptions, target: RedisTarget) {
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.log = opts.logger ?? silentLogger;
    this.metrics = opts.metrics;
    this.timeoutMs = opts.commandTimeoutMs ?? 500;
    this.ttlSeconds = opts.ttlSeconds;
    this.safeUrl = opts.url.replace(/\/\/[^@/]*@/, '//***@');
    this.client = makeClient(target, { commandTimeoutMs: this.timeoutMs, connectTimeoutMs: opts.connectTimeoutMs ?? 1000 });
    this.client.on('error', (err: Error) => {
      // Why it is unreachable (refused, unknown host, auth) says more than that a call took too long.
      this.lastError = err.message;
      this.log.debug({ err: err.message, remote: this.safeUrl }, 'redis connection error');
    });
    this.breaker = new Breaker({
      threshold: opts.failureThreshold ?? 1,
      probeIntervalMs: opts.probeIntervalMs ?? 2000,
      probe: () => withTimeout(this.client.ping(), this.timeoutMs, 'redis PING'),
      onChange: (open) => {
        this.metrics?.breakerOpen.set(open ? 1 : 0);
        if (open) this.log.warn({ remote: this.safeUrl, tier: 'remote', ...(this.lastError ? { err: this.lastError } : {}) }, 'remote cache unreachable: reading from the other tiers');
        else this.log.warn({ remote: this.safeUrl, tier: 'remote' }, 'remote cache is back');
      },
    });
    this.queue = new PublishQueue({
      maxItems: opts.maxQueueChunks ?? 256,
      maxBytes: opts.maxQueueBytes ?? 64 * 1024 * 1024,
      concurrency: opts.publishConcurrency ?? 2,
      send: (item) => this.send(item),
      onResult: (result, item, err) => {
        this.metrics?.publish.inc({ result });
        if (result === 'stored' || result === 'skipped') {
          this.present.add(item.key);
          this.bad.delete(item.key);
        }
        if (result === 'failed') this.log.debug({ err, key: item.key }, 'publish to remote cache failed');
      },
      onBytes: (b) => this.metrics?.publishQueueBytes.set(b),
    });
  }

  /**
   * Connect within the connect timeout. A server that is down does not fail this: the breaker
   * starts open and the probe finds the server when it comes. A malformed URL does fail (EINVAL).
   */
  static async connect(opts: RemoteCacheOptions): Promise<RedisChunkCache> {
    const cache = new RedisChunkCache(opts, parseRedisUrl(opts.url));
    const connectMs = (opts.connectTimeoutMs ?? 1000) + 500;
    try {
      await withTimeout(cache.whenReady(), connectMs, 'redis connect');
    } catch (err) {
      cache.lastError ??= (err as Error).message;
      cache.breaker.trip(); // says so, with why
    }
    return cache;
  }

  get available(): boolean {
    return !this.breaker.open;
  }

  get pendingPublishes(): number {
    return this.queue.pending;
  }

  keyOf(digest: Buffer): string {
    return this.prefix + digest.toString('hex');
  }

  /** The chunk with this sha256, verified, or null (absent, wrong, unreachable or skipped). */
  async fetchChunk(digest: Buffer, length: number, context: { layer: string; chunk: number }): Promise<Buffer | null> {
    if (this.breaker.open) return null;
    const key = this.keyOf(digest);
    const m = this.metrics;
    m?.requests.inc({ tier: 'remote' });
    const endTimer = m?.fetchSeconds.startTimer({ tier: 'remote' });
    let value: Buffer | null;
    try {
      value = await withTimeout(this.client.getBuffer(key), this.timeoutMs, 'redis GET');
      this.breaker.success();
    } catch (err) {
      m?.errors.inc({ tier: 'remote' });
      this.breaker.failure();
      this.log.warn({ ...context, tier: 'remote', err: (err as Error).message }, 'remote cache read failed');
      return null;
    } finally {
      endTimer?.();
    }
    if (value === null) {
      m?.misses.inc({ tier: 'remote' });
      return null;
    }
    m?.bytes.inc({ tier: 'remote' }, value.length);
    if (value.length !== length || !createHash('sha256').update(value).digest().equals(digest)) {
      m?.verifyFailures.inc({ tier: 'remote' });
      m?.misses.inc({ tier: 'remote' });
      this.bad.add(key);
      this.present.delete(key);
      this.log.warn({ ...context, tier: 'remote', key, got: value.length, want: length }, 'remote cache chunk failed verification');
      return null;
    }
    m?.hits.inc({ tier: 'remote' });
    this.present.add(key);
    return value;
  }

  /**
   * A whole value stored under `key` by storeValue (an index, not a chunk: the caller checks it),
   * or null when absent, unreachable or skipped.
   */
  fetchValue(key: string): Promise<Buffer | null> {
    // Big values take longer than a chunk: the deadline grows with what may come back.
    return this.guarded(key, 'read', null, this.timeoutMs * 10, () => this.client.getBuffer(key));
  }

  /** Store a value under `key` now (replacing any), for fetchValue; false when the cache is unavailable. */
  storeValue(key: string, data: Buffer): Promise<boolean> {
    const timeout = this.timeoutMs + Math.ceil(data.length / 1e6) * 50;
    const ttl = this.ttlSeconds;
    return this.guarded(key, 'write', false, timeout, async () => (await (ttl ? this.client.set(key, data, 'EX', ttl) : this.client.set(key, data))) === 'OK');
  }

  /**
   * Bytes [start, end) of the value under `key` (GETRANGE), or null when unreachable or skipped;
   * shorter (or empty) where the value ends before `end`. The caller checks what it gets.
   */
  fetchRange(key: string, start: number, end: number): Promise<Buffer | null> {
    return this.guarded(key, 'read', null, this.timeoutMs, () => this.client.getrangeBuffer(key, start, end - 1));
  }

  /**
   * Write `data` at `offset` of the value under `key` (SETRANGE: a value too short is padded with
   * zeros, which a reader's check takes for a miss); false when the cache is unavailable.
   */
  storeRange(key: string, offset: number, data: Buffer): Promise<boolean> {
    const ttl = this.ttlSeconds;
    return this.guarded(key, 'write', false, this.timeoutMs, async () => {
      await this.client.setrange(key, offset, data);
      if (ttl) await this.client.expire(key, ttl);
      return true;
    });
  }

  /** Remove `key`; false when the cache is unavailable. */
  deleteValue(key: string): Promise<boolean> {
    return this.guarded(key, 'write', false, this.timeoutMs, async () => (await this.client.del(key), true));
  }

  /** One call behind the breaker and a deadline: `failed` when skipped or failing (logged, counted by the breaker). */
  private async guarded<T>(key: string, what: 'read' | 'write', failed: T, timeoutMs: number, call: () => Promise<T>): Promise<T> {
    if (this.breaker.open) return failed;
    try {
      const result = await withTimeout(call(), timeoutMs, `redis ${what}`);
      this.breaker.success();
      return result;
    } catch (err) {
      this.breaker.failure();
      this.log.warn({ key, tier: 'remote', err: (err as Error).message }, `remote cache ${what} failed`);
      return failed;
    }
  }

  /** Queue a verified chunk for publication; false if it was dropped. */
  publish(digest: Buffer, data: Buffer): boolean {
    const key = this.keyOf(digest);
    if (this.present.has(key)) return true;
    if (this.breaker.open) {
      this.metrics?.publish.inc({ result: 'dropped' });
      return false;
    }
    return this.queue.push({ key, data, overwrite: this.bad.has(key) });
  }

  /** Wait for pending publications, at most `deadlineMs`; returns how many were still pending. */
  flush(deadlineMs: number): Promise<number> {
    return this.queue.drain(deadlineMs);
  }

  async close(): Promise<void> {
    this.breaker.stop();
    this.queue.clear();
    try {
      await withTimeout(this.client.quit(), this.timeoutMs, 'redis QUIT');
    } catch {
      // gone already
    }
    this.client.disconnect();
  }

  private whenReady(): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve) => this.client.once('ready', () => resolve()));
  }

  private async send(item: PublishItem): Promise<'stored' | 'skipped'> {
    if (this.breaker.open) throw new ClipError('ENETWORK', 'remote cache unavailable');
    try {
      if (!item.overwrite) {
        const exists = await withTimeout(this.client.exists(item.key), this.timeoutMs, 'redis EXISTS');
        if (exists === 1) return 'skipped';
      }
      const ttl = this.ttlSeconds;
      const timeout = this.timeoutMs + Math.ceil(item.data.length / 1e6) * 50;
      let reply: string | null;
      if (item.overwrite) {
        reply = ttl ? await withTimeout(this.client.set(item.key, item.data, 'EX', ttl), timeout, 'redis SET') : await withTimeout(this.client.set(item.key, item.data), timeout, 'redis SET');
      } else {
        reply = ttl
          ? await withTimeout(this.client.set(item.key, item.data, 'EX', ttl, 'NX'), timeout, 'redis SET')
          : await withTimeout(this.client.set(item.key, item.data, 'NX'), timeout, 'redis SET');
      }
      this.breaker.success();
      return reply === 'OK' ? 'stored' : 'skipped';
    } catch (err) {
      this.breaker.failure();
      throw err;
    }
  }
}
