/**
 * One registry host spoken to over the distribution API: scheme choice (plain HTTP only for
 * loopback and insecure hosts), authentication, deadlines, retries with backoff and jitter, and
 * redirects followed by hand so the registry's Authorization never goes to another host.
 */
import './http-parser-tier.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { insecureRegistriesFromEnv } from './insecure-registries.js';
import { ClipError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { Authenticator } from './auth.js';
import { DockerConfigCredentials, type CredentialStore } from './credentials.js';
import { DOCKER_HUB } from './reference.js';
import { backoffDelay, DEFAULT_TIMEOUTS, isTransientNetworkError, type RetryOptions, type TimeoutOptions } from './retry.js';

export { backoffDelay, isTransientNetworkError, type RetryOptions, type TimeoutOptions };

export interface RegistryOptions {
  /** Hosts ("host:port" or "host") spoken to over plain HTTP; CLIP_INSECURE_REGISTRIES adds to it. */
  insecureRegistries?: string[];
  /** Defaults to docker's config.json (DOCKER_CONFIG honoured). */
  credentials?: CredentialStore;
  logger?: Logger;
  retry?: RetryOptions;
  timeouts?: TimeoutOptions;
  userAgent?: string;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RegistryRequest {
  method: HttpMethod;
  /** A path under the registry ("/v2/...") or an absolute URL it handed out (upload locations). */
  url: string;
  /** Token scope: "repository:team/app:pull". */
  scope?: string;
  headers?: Record<string, string>;
  /** Made afresh for every attempt so a retried upload sends its body again. */
  body?: () => Buffer | string | Readable;
  signal?: AbortSignal;
  /** Follow redirects (blob GETs); uploads must not. */
  followRedirects?: boolean;
  /** Do not retry on 5xx/429 (a caller that handles them itself). */
  noRetry?: boolean;
}

const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 5, baseDelayMs: 200, maxDelayMs: 10_000 };
const MAX_REDIRECTS = 5;

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function hostnameOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(0, registry.indexOf(']') + 1);
  return registry.replace(/:\d+$/, '');
}

/** Plain HTTP for loopback hosts and hosts listed as insecure (by "host:port" or bare "host"). */
export function usesPlainHttp(registry: string, insecure: string[]): boolean {
  const hostname = hostnameOf(registry);
  return isLoopback(hostname) || insecure.some((h) => h === registry || h === hostname);
}

function redactUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Responses that came from another origin than the registry's (a redirect's target). */
const fromElsewhere = new WeakSet<Dispatcher.ResponseData>();

export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: URL;
  readonly logger: Logger;
  readonly retry: Required<RetryOptions>;
  private readonly agent: Agent;
  private readonly auth: Authenticator;
  private readonly userAgent: string;
  private pinged: Promise<void> | undefined;

  constructor(registry: string, opts: RegistryOptions = {}) {
    this.registry = registry;
    const insecure = [...(opts.insecureRegistries ?? []), ...insecureRegistriesFromEnv()];
    const endpoint = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
    this.baseUrl = new URL(`${usesPlainHttp(registry, insecure) ? 'http' : 'https'}://${endpoint}`);
    this.logger = (opts.logger ?? silentLogger).child({ registry });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.agent = new Agent({ connectTimeout: t.connectMs, headersTimeout: t.headersMs, bodyTimeout: t.bodyIdleMs, keepAliveTimeout: 10_000 });
    this.userAgent = opts.userAgent ?? 'clip/0.1';
    this.auth = new Authenticator({
      registry,
      credentials: opts.credentials ?? new DockerConfigCredentials(),
      dispatcher: this.agent,
      logger: this.logger,
      userAgent: this.userAgent,
      retry: this.retry,
    });
  }

  /**
   * Sends a request with authentication, retries and redirects; returns the final response, whatever
   * its status, for the caller to judge. 401 after a fresh token is returned too.
   *
   * No `GET /v2/` ping first where no credentials are configured for the registry (a round trip
   * before every cold start's first request): the first request goes out as it is, and the
   * registry's 401 challenge on it says how to authenticate, as the distribution spec allows; it is
   * sent again once, with what the challenge asks for.
   */
  async request(req: RegistryRequest): Promise<Dispatcher.ResponseData> {
    // With credentials configured, the registry is asked first how to authenticate, as before: a
    // private repository may answer an anonymous request 404 or 403 instead of a 401 challenge.
    if (!this.auth.challenge && (await this.auth.mayHaveCredentials())) await this.ping(req.signal);
    let retriedAuth = false;
    while (true) {
      const authorization = await this.auth.authorization(req.scope);
      const res = await this.send({ ...req, authorization });
      // A 401 from a storage host the registry redirected to is not the registry's challenge.
      if (res.statusCode === 401 && !retriedAuth && !fromElsewhere.has(res)) {
        const again = this.auth.onUnauthorized(headerValue(res.headers['www-authenticate']), req.scope, authorization !== undefined);
        if (again) {
          await res.body.dump();
          retriedAuth = true;
          continue;
        }
      }
      return res;
    }
  }

  /** GET /v2/: learns whether and how the registry wants authentication (once per client). */
  private ping(signal?: AbortSignal): Promise<void> {
    this.pinged ??= (async () => {
      const res = await this.send({ method: 'GET', url: '/v2/', ...(signal ? { signal } : {}) });
      await res.body.dump();
      if (res.statusCode === 401) {
        this.auth.onUnauthorized(headerValue(res.headers['www-authenticate']), undefined, false);
      } else if (res.statusCode === 200) {
        this.auth.challenge ??= { scheme: 'none' };
      } else if (res.statusCode === 404) {
        throw new ClipError('EUNSUPPORTED', 'not an OCI distribution registry (GET /v2/ answered 404)', { object: this.registry });
      } else {
        throw new ClipError('ENETWORK', `registry answered HTTP ${res.statusCode} to GET /v2/`, { object: this.registry });
      }
    })().catch((err: unknown) => {
      this.pinged = undefined; // a failed ping is retried by the next request
      throw err;
    });
    return this.pinged;
  }

  /** One logical request: retries on transient failures, follows redirects by hand. */
  private async send(req: RegistryRequest & { authorization?: string }): Promise<Dispatcher.ResponseData> {
    for (let attempt = 0; ; attempt++) {
      const last = attempt + 1 >= this.retry.attempts;
      let res: Dispatcher.ResponseData;
      try {
        res = await this.sendFollowing(req);
      } catch (err) {
        if (req.signal?.aborted) throw err;
        if (last || !isTransientNetworkError(err)) {
          if (err instanceof ClipError) throw err;
          throw new ClipError('ENETWORK', `${req.method} failed after ${attempt + 1} attempt(s): ${(err as Error).message}`, { object: this.describe(req.url), cause: err });
        }
        const delay = backoffDelay(attempt, this.retry);
        this.logger.info({ method: req.method, url: this.describe(req.url), attempt: attempt + 1, delayMs: Math.round(delay), err: (err as Error).message }, 'retrying after network error');
        await sleep(delay, undefined, { signal: req.signal });
        continue;
      }
      const retryable = res.statusCode === 429 || (res.statusCode >= 500 && res.statusCode !== 501);
      if (!retryable || last || req.noRetry) return res;
      await res.body.dump().catch(() => undefined);
      const retryAfter = Number(headerValue(res.headers['retry-after']));
      const delay = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, this.retry.maxDelayMs) : backoffDelay(attempt, this.retry);
      this.logger.info({ method: req.method, url: this.describe(req.url), status: res.statusCode, attempt: attempt + 1, delayMs: Math.round(delay) }, 'retrying after server error');
      await sleep(delay, undefined, { signal: req.signal });
    }
  }

  private async sendFollowing(req: RegistryRequest & { authorization?: string }): Promise<Dispatcher.ResponseData> {
    let url = new URL(req.url, this.baseUrl);
    let method = req.method;
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === this.baseUrl.origin;
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers };
      // The registry's credentials go to the registry only, never to a storage host it redirects to.
      if (req.authorization && sameOrigin) headers.authorization = req.authorization;
      this.logger.debug({ method, url: redactUrl(url), range: headers.range }, 'registry request');
      const body = hop === 0 && req.body ? req.body() : undefined;
      const res = await request(url, { method, headers, body, dispatcher: this.agent, signal: req.signal });
      if (!sameOrigin) fromElsewhere.add(res);
      const location = headerValue(res.headers.location);
      if (!req.followRedirects || ![301, 302, 303, 307, 308].includes(res.statusCode) || !location) return res;
      await res.body.dump();
      if (hop >= MAX_REDIRECTS) throw new ClipError('ENETWORK', `more than ${MAX_REDIRECTS} redirects`, { object: this.describe(req.url) });
      url = new URL(location, url);
      if (res.statusCode === 303) method = 'GET';
    }
  }

  private describe(url: string): string {
    return redactUrl(new URL(url, this.baseUrl));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a small JSON error body of the distribution API into one line ("BLOB_UNKNOWN: blob unknown"). */
export async function errorSummary(res: Dispatcher.ResponseData): Promise<string> {
  try {
    const text = await res.body.text();
    const json = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const e = json.errors?.[0];
    if (e) return `${e.code ?? ''}${e.message ? `: ${e.message}` : ''}`;
    return text.slice(0, 200);
  } catch {
    return '';
  }
}
