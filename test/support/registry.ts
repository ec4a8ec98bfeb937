/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on a free loopback port
 * with a temporary storage directory; optionally behind token auth served by a small JWT token
 * server here (RS256, key id in libtrust form, certificate made with openssl).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { onFreePort } from './ports.js';
import { run } from './tools.js';

export interface TokenRequest {
  user: string | undefined;
  scope: string | undefined;
  service: string | undefined;
}

export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  storageDir: string;
  /** Present when started with token auth: every token request received. */
  tokenRequests?: TokenRequest[];
  logs(): string;
  stop(): Promise<void>;
}

export interface TokenAuthOptions {
  /** user -> password accepted by the token server (Basic auth on the token request). */
  users: Record<string, string>;
  /** OAuth2 refresh tokens (docker's "identitytoken") -> user. */
  refreshTokens?: Record<string, string>;
  /** Whether a request without credentials gets pull access. */
  anonymousPull?: boolean;
}

/** A bcrypt hash for htpasswd, from the system's libxcrypt through perl's crypt (apache2-utils is not installed). */
export async function bcryptHash(password: string): Promise<string> {
  const salt = '$2b$05$' + 'clipTestSaltForHtpasswd'.slice(0, 21) + 'e';
  const { stdout } = await run('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, salt]);
  if (!stdout.startsWith('$2b$05$')) throw new Error(`the system crypt() cannot make bcrypt hashes (got "${stdout}")`);
  return stdout;
}

export { freePort } from './ports.js';

/** A header every test registry adds to its answers, with a value of its own (distribution's `http.headers`). */
const NONCE_HEADER = 'X-Clip-Test-Registry';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** docker/libtrust's key id: base32 of the first 240 bits of sha256(SPKI DER), in groups of four. */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const s = base32(createHash('sha256').update(der).digest().subarray(0, 30));
  return s.match(/.{4}/g)!.join(':');
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

interface TokenServer {
  url: string;
  requests: TokenRequest[];
  server: Server;
}

const SERVICE = 'clip-test-registry';
const ISSUER = 'clip-test-token-issuer';

async function startTokenServer(dir: string, opts: TokenAuthOptions): Promise<TokenServer & { certFile: string }> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=clip-test-token']);
  const privateKey = createPrivateKey(await readFile(keyFile));
  const kid = libtrustKeyId(createPublicKey(await readFile(certFile)));
  const requests: TokenRequest[] = [];

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token');
    let params = url.searchParams;
    if (req.method === 'POST') {
      // OAuth2 refresh-token grant, as clients holding an identity token use it.
      let text = '';
      for await (const c of req) text += (c as Buffer).toString('utf8');
      params = new URLSearchParams(text);
    }
    const scope = params.get('scope') ?? undefined;
    const service = params.get('service') ?? undefined;
    let user: string | undefined;
    const auth = req.headers.authorization;
    if (req.method === 'POST') {
      user = params.get('grant_type') === 'refresh_token' ? opts.refreshTokens?.[params.get('refresh_token') ?? ''] : undefined;
      if (!user) {
        requests.push({ user: undefined, scope, service });
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad refresh token"}');
        return;
      }
    } else if (auth?.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      if (name === undefined || opts.users[name] !== rest.join(':')) {
        requests.push({ user: name, scope, service });
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    requests.push({ user, scope, service });
    const access = (scope ? scope.split(' ') : []).flatMap((s) => {
      const [type, name, actions] = s.split(':') as [string, string, string];
      const wanted = (actions ?? '').split(',').filter(Boolean);
      const granted = user ? wanted : opts.anonymousPull ? wanted.filter((a) => a === 'pull') : [];
      return granted.length ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', kid };
    const claims = { iss: ISSUER, sub: user ?? '', aud: service ?? SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), privateKey);
    const token = `${signingInput}.${b64url(signature)}`;
    const reply = req.method === 'POST' ? { access_token: token, expires_in: 300 } : { token, expires_in: 300, issued_at: new Date().toISOString() };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
  };
  const server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/token`, requests, server, certFile };
}

/** Waits until `url` is answered by this child: the answer must carry its `nonce` header, since another process may hold the port. */
async function waitForRegistry(url: string, nonce: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${logs()}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.headers.get(NONCE_HEADER) === nonce) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`docker-registry did not answer ${url} within 20 s: ${logs()}`);
}

/** Starts docker-registry on 127.0.0.1:<free port>; with `tokenAuth`, behind bearer token auth. */
export async function startRegistry(opts: { tokenAuth?: TokenAuthOptions; basicAuth?: { users: Record<string, string> } } = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'clip-registry-'));
  const storageDir = join(dir, 'storage');
  const token = opts.tokenAuth ? await startTokenServer(dir, opts.tokenAuth) : undefined;
  let authConfig = token
    ? `auth:\n  token:\n    realm: ${token.url}\n    service: ${SERVICE}\n    issuer: ${ISSUER}\n    rootcertbundle: ${token.certFile}\n`
    : '';
  if (opts.basicAuth) {
    const lines = await Promise.all(Object.entries(opts.basicAuth.users).map(async ([u, p]) => `${u}:${await bcryptHash(p)}`));
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    authConfig = `auth:\n  htpasswd:\n    realm: clip-test-basic\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  let served: { stop: () => Promise<void>; logs: () => string } | undefined;
  let port = 0;
  const stop = async (): Promise<void> => {
    await served?.stop();
    if (token) {
      token.server.closeAllConnections();
      await new Promise<void>((resolve) => token.server.close(() => resolve()));
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    ({ port, started: served } = await onFreePort((p) => serveRegistry(dir, storageDir, p, authConfig)));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    storageDir,
    ...(token ? { tokenRequests: token.requests } : {}),
    logs: served!.logs,
    stop,
  };
}

/** docker-registry serving `storageDir` on `port`, once it answers; stopped again if it does not. */
async function serveRegistry(dir: string, storageDir: string, port: number, authConfig: string): Promise<{ stop: () => Promise<void>; logs: () => string }> {
  const nonce = randomBytes(8).toString('hex');
  const config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storageDir}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: clip-test-secret
  headers:
    ${NONCE_HEADER}: [${nonce}]
${authConfig}`;
  const configFile = join(dir, 'config.yml');
  await writeFile(configFile, config);
  const child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (d: Buffer): void => {
    output = (output + d.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!killed) {
        child.kill('SIGKILL');
        await exited;
      }
    }
  };
  try {
    await waitForRegistry(`http://127.0.0.1:${port}/v2/`, nonce, child, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop, logs: () => output };
}
