/**
 * Registry authentication: the WWW-Authenticate challenge learnt from a 401, Bearer tokens fetched
 * from the challenge's realm and cached per scope, and Basic auth. Secrets never reach a log.
 */
import './http-parser-tier.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { CredentialStore, Credentials } from './credentials.js';
import { backoffDelay, isTransientNetworkError, type RetryOptions } from './retry.js';

export type Challenge =
  | { scheme: 'none' }
  | { scheme: 'basic'; realm?: string }
  | { scheme: 'bearer'; realm: string; service?: string; scope?: string };

/** Parse one WWW-Authenticate value: `Bearer realm="...",service="...",scope="..."` or `Basic realm=...`. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  if (scheme === 'bearer') {
    if (!params.realm) return undefined;
    return { scheme: 'bearer', realm: params.realm, ...(params.service ? { service: params.service } : {}), ...(params.scope ? { scope: params.scope } : {}) };
  }
  if (scheme === 'basic') return { scheme: 'basic', ...(params.realm ? { realm: params.realm } : {}) };
  return undefined;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const MIN_TOKEN_LIFETIME_S = 60;
const EXPIRY_MARGIN_MS = 10_000;

export interface AuthenticatorOptions {
  registry: string;
  credentials?: CredentialStore;
  dispatcher: Dispatcher;
  logger: Logger;
  userAgent: string;
  retry: Required<RetryOptions>;
}

/**
 * The challenge each registry gave in this process: a client made later (a kept server's next
 * mount) sends its first request with credentials at once, instead of learning the challenge again
 * from a 401 (a round trip before every cold start on a registry with auth).
 */
const learnt = new Map<string, Challenge>();

export class Authenticator {
  challenge: Challenge | undefined;
  /** The challenge came from `learnt`, not from a 401 to this client: it may be stale. */
  private remembered: boolean;
  private readonly tokens = new Map<string, CachedToken>();
  /** Token fetches in flight, so that concurrent requests for one scope share one fetch. */
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private credentials: Promise<Credentials | undefined> | undefined;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.challenge = learnt.get(opts.registry);
    this.remembered = this.challenge !== undefined;
  }

  /** The Authorization header for a request needing `scope`, if the registry asks for one. */
  async authorization(scope: string | undefined): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch || ch.scheme === 'none') return undefined;
    if (ch.scheme === 'basic') return this.basicHeader();
    const key = scope ?? '';
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    let inFlight = this.pending.get(key);
    if (!inFlight) {
      inFlight = this.fetchToken(ch, scope).finally(() => this.pending.delete(key));
      this.pending.set(key, inFlight);
    }
    const wasRemembered = this.remembered;
    let token: CachedToken;
    try {
      token = await inFlight;
    } catch (err) {
      // Requests waiting on one fetch all come here: the first drops the challenge, the others
      // then find it dropped (or learnt anew) and ask again with what is current.
      if (this.challenge !== ch) return this.authorization(scope);
      if (!wasRemembered) throw err;
      // The registry's auth may have changed since: ask without, and learn from its answer.
      this.opts.logger.debug({ err: (err as Error).message }, 'the remembered registry challenge failed; asking without credentials');
      if (learnt.get(this.opts.registry) === ch) learnt.delete(this.opts.registry);
      this.challenge = undefined;
      this.remembered = false;
      return undefined;
    }
    this.tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  /**
   * After a 401: learn the challenge, drop the stale token; false when retrying cannot help.
   * `sentAuthorization`: whether the refused request carried credentials. One that did not is worth
   * sending again with them even when the challenge is known already: requests sent at once before
   * any challenge was learnt each get a 401, and only the first of them learns it.
   */
  onUnauthorized(wwwAuthenticate: string | undefined, scope: string | undefined, sentAuthorization: boolean): boolean {
    const ch = parseChallenge(wwwAuthenticate);
    if (!ch) return false;
    const hadToken = this.tokens.delete(scope ?? '');
    const changed = JSON.stringify(ch) !== JSON.stringify(this.challenge);
    this.challenge = ch;
    this.remembered = false;
    learnt.set(this.opts.registry, ch);
    return changed || hadToken || !sentAuthorization;
  }

  /** Whether credentials may be configured for this registry (see CredentialStore.configured). */
  async mayHaveCredentials(): Promise<boolean> {
    const store = this.opts.credentials;
    if (!store) return false;
    return store.configured ? store.configured(this.opts.registry) : true;
  }

  private getCredentials(): Promise<Credentials | undefined> {
    this.credentials ??= this.opts.credentials ? this.opts.credentials.get(this.opts.registry) : Promise.resolve(undefined);
    return this.credentials;
  }

  private async basicHeader(): Promise<string> {
    const creds = await this.getCredentials();
    if (!creds?.username || creds.password === undefined) {
      throw new ClipError('EAUTH', 'registry requires Basic authentication and no credentials were found (docker login, or DOCKER_CONFIG)', { object: this.opts.registry });
    }
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
  }

  /** The token service flaps like any server: transient failures and 429/5xx are retried with backoff. */
  private async sendWithRetry(url: URL, init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string }): Promise<Dispatcher.ResponseData> {
    const { attempts } = this.opts.retry;
    for (let attempt = 0; ; attempt++) {
      const last = attempt + 1 >= attempts;
      try {
        const res = await request(url, { ...init, dispatcher: this.opts.dispatcher });
        if (last || !(res.statusCode === 429 || res.statusCode >= 500)) return res;
        await res.body.dump();
      } catch (err) {
        if (last || !isTransientNetworkError(err)) {
          throw new ClipError('ENETWORK', `token service unreachable: ${(err as Error).message}`, { object: `${url.origin}${url.pathname}`, cause: err });
        }
      }
      await sleep(backoffDelay(attempt, this.opts.retry));
    }
  }

  private async fetchToken(ch: Extract<Challenge, { scheme: 'bearer' }>, scope: string | undefined): Promise<CachedToken> {
    const creds = await this.getCredentials();
    const url = new URL(ch.realm);
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with an identity token.
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'clip' });
      if (ch.service) form.set('service', ch.service);
      if (scope) form.set('scope', scope);
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (ch.service) url.searchParams.set('service', ch.service);
      if (scope) url.searchParams.set('scope', scope);
      if (creds?.username) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
    }
    this.opts.logger.debug({ realm: `${url.origin}${url.pathname}`, scope, withCredentials: Boolean(creds) }, 'fetching registry token');
    const res = await this.sendWithRetry(url, { method, headers, ...(body !== undefined ? { body } : {}) });
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump();
      throw new ClipError('EAUTH', `token service refused ${creds ? 'the credentials' : 'anonymous access'} (HTTP ${res.statusCode}) for ${scope ?? 'registry'}`, { object: this.opts.registry });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new ClipError('ENETWORK', `token service answered HTTP ${res.statusCode}`, { object: `${url.origin}${url.pathname}` });
    }
    const json = (await res.body.json()) as { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    const token = json.token ?? json.access_token;
    if (!token) throw new ClipError('EAUTH', 'token service reply has no token', { object: `${url.origin}${url.pathname}` });
    const lifetime = Math.max(json.expires_in ?? MIN_TOKEN_LIFETIME_S, MIN_TOKEN_LIFETIME_S) * 1000;
    const issued = json.issued_at ? Date.parse(json.issued_at) : NaN;
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    return { token, expiresAt: start + lifetime - EXPIRY_MARGIN_MS };
  }
}
