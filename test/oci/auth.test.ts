/** Bearer token auth against the real registry, credentials from docker's config.json. */
import { Writable, type Readable } from 'node:stream';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseChallenge } from '../../src/oci/auth.js';
import { DockerConfigCredentials, StaticCredentials } from '../../src/oci/credentials.js';
import { openImage, pushLayout } from '../../src/oci/index.js';
import { usesPlainHttp } from '../../src/oci/registry-client.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { LayoutWriter, writeImage, type TestImage } from './images.js';

const PASSWORD = 'correct-horse-battery-staple';

async function readBlob(source: ReturnType<typeof openImage>, desc: TestImage['layers'][number]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await source.openBlob(desc)) as Readable) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('parseChallenge', () => {
  it('reads Bearer and Basic challenges', () => {
    expect(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"')).toEqual({
      scheme: 'bearer', realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull',
    });
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: 'basic', realm: 'Registry Realm' });
    expect(parseChallenge('Bearer service="x"')).toBeUndefined();
    expect(parseChallenge(undefined)).toBeUndefined();
  });
});

describe('plain HTTP only for loopback and insecure hosts', () => {
  it.each([
    ['localhost:5000', [], true], ['127.0.0.1:5000', [], true], ['127.8.9.10', [], true], ['[::1]:5000', [], true],
    ['registry.example', [], false], ['10.0.0.1:5000', [], false], ['10.0.0.1:5000', ['10.0.0.1:5000'], true],
    ['reg.lan:5000', ['reg.lan'], true], ['reg.lan:5000', ['reg.lan:6000'], false], ['localhost.evil.com', [], false],
  ] as const)('%s insecure=%j -> %s', (host, insecure, plain) => {
    expect(usesPlainHttp(host, [...insecure])).toBe(plain);
  });
});

describe('bearer token flow against the real registry', () => {
  let registry: TestRegistry;
  let work: string;
  let img: TestImage;
  let goodConfig: string;

  beforeAll(async () => {
    registry = await startRegistry({ tokenAuth: { users: { alice: PASSWORD }, refreshTokens: { 'refresh-for-alice': 'alice' } } });
    work = await mkdtemp(join(tmpdir(), 'clip-oci-auth-'));
    goodConfig = join(work, 'docker-good');
    await mkdir(goodConfig);
    await writeFile(join(goodConfig, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }));
    const w = new LayoutWriter(join(work, 'layout'));
    img = await writeImage(w, { layers: [{ a: 'one' }, { b: 'two' }] });
    w.tag(img.manifest, 'v1');
    await w.save();
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('pushes and pulls with credentials from DOCKER_CONFIG, caching one token per scope, logging no secret', async () => {
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = goodConfig;
    let logged = '';
    const logger = pino({ level: 'trace' }, new Writable({ write(c: Buffer, _e, cb) { logged += c.toString(); cb(); } }));
    try {
      await pushLayout(join(work, 'layout'), 'v1', `${registry.host}/team/app:v1`, { logger });
      const before = registry.tokenRequests!.length;
      const source = openImage(`${registry.host}/team/app:v1`, { logger });
      const r = await source.resolve();
      expect(r.manifestDigest).toBe(img.manifest.digest);
      for (const l of r.layers) for await (const _ of (await source.openBlob(l.descriptor)) as Readable) void _;
      await source.close?.();
      const pulls = registry.tokenRequests!.slice(before);
      expect(pulls).toEqual([{ user: 'alice', scope: 'repository:team/app:pull', service: 'clip-test-registry' }]);
      expect(registry.tokenRequests!.some((t) => t.scope === 'repository:team/app:pull,push' && t.user === 'alice')).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
    expect(logged).toContain('registry request'); // the log was really written
    expect(logged).not.toContain(PASSWORD);
    expect(logged).not.toContain(Buffer.from(`alice:${PASSWORD}`).toString('base64'));
    expect(logged).not.toMatch(/Bearer|eyJ/);
  });

  it('with credentials configured, asks the registry first how to authenticate: one GET /v2/, and no other request goes without them', async () => {
    // A private repository may answer an anonymous request 404 or 403 instead of a 401 challenge:
    // a client with credentials learns the challenge before its first request, as before.
    const proxy = await startFaultProxy(registry.host);
    const d = join(work, 'docker-proxy');
    await mkdir(d);
    await writeFile(join(d, 'config.json'), JSON.stringify({ auths: { [proxy.host]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }));
    const source = openImage(`${proxy.host}/team/app:v1`, { credentials: new DockerConfigCredentials(d) });
    try {
      const [resolved, ...layers] = await Promise.all([source.resolve(), ...img.layers.map((l) => readBlob(source, l))]);
      expect(resolved.manifestDigest).toBe(img.manifest.digest);
      expect(layers).toEqual(img.layerBytes);
      expect(proxy.count((r) => r.path === '/v2/' || r.path === '/v2')).toBe(1);
      expect(proxy.requests.filter((r) => r.path !== '/v2/' && !r.authorized)).toEqual([]);
    } finally {
      await source.close?.();
      await proxy.stop();
    }
  });

  it('a later client of the same registry sends its first request with a token at once: the challenge is remembered', async () => {
    const proxy = await startFaultProxy(registry.host);
    const d = join(work, 'docker-later');
    await mkdir(d);
    await writeFile(join(d, 'config.json'), JSON.stringify({ auths: { [proxy.host]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }));
    try {
      for (const round of [1, 2]) {
        const before = proxy.requests.length;
        const source = openImage(`${proxy.host}/team/app:v1`, { credentials: new DockerConfigCredentials(d) });
        expect((await source.resolve()).manifestDigest).toBe(img.manifest.digest);
        await source.close?.();
        const unauthorized = proxy.requests.slice(before).filter((r) => !r.authorized).length;
        // The first client learns the challenge from a 401; the second never gets one.
        if (round === 1) expect(unauthorized).toBe(1);
        else expect(unauthorized).toBe(0);
      }
    } finally {
      await proxy.stop();
    }
  });

  it('exchanges an identity token (OAuth2 refresh token) from config.json for access tokens', async () => {
    const d = join(work, 'docker-idtoken');
    await mkdir(d);
    await writeFile(join(d, 'config.json'), JSON.stringify({ auths: { [registry.host]: { identitytoken: 'refresh-for-alice' } } }));
    const before = registry.tokenRequests!.length;
    const source = openImage(`${registry.host}/team/app:v1`, { credentials: new DockerConfigCredentials(d) });
    expect((await source.resolve()).manifestDigest).toBe(img.manifest.digest);
    await source.close?.();
    expect(registry.tokenRequests!.slice(before)).toEqual([{ user: 'alice', scope: 'repository:team/app:pull', service: 'clip-test-registry' }]);
  });

  it('refuses a wrong password with EAUTH naming the registry', async () => {
    const d = join(work, 'docker-bad');
    await mkdir(d);
    await writeFile(join(d, 'config.json'), JSON.stringify({ auths: { [registry.host]: { username: 'alice', password: 'wrong' } } }));
    const source = openImage(`${registry.host}/team/app:v1`, { credentials: new DockerConfigCredentials(d) });
    await expect(source.resolve()).rejects.toMatchObject({ code: 'EAUTH', message: expect.stringContaining(registry.host) });
    await source.close?.();
  });

  it('an anonymous pull that gets no access is EAUTH naming the repository', async () => {
    const source = openImage(`${registry.host}/team/app:v1`, { credentials: new DockerConfigCredentials(join(work, 'none')) });
    await expect(source.resolve()).rejects.toMatchObject({ code: 'EAUTH', message: expect.stringContaining(`${registry.host}/team/app`) });
    await source.close?.();
  });
});

describe('an anonymous client of a registry with token auth', () => {
  it('asks no GET /v2/ first: requests sent at once on a fresh client each authenticate after their own 401', async () => {
    const registry = await startRegistry({ tokenAuth: { users: { alice: PASSWORD }, anonymousPull: true } });
    const proxy = await startFaultProxy(registry.host);
    const work = await mkdtemp(join(tmpdir(), 'clip-oci-anon-'));
    try {
      const w = new LayoutWriter(join(work, 'layout'));
      const img = await writeImage(w, { layers: [{ a: 'one' }, { b: 'two' }] });
      w.tag(img.manifest, 'v1');
      await w.save();
      await pushLayout(join(work, 'layout'), 'v1', `${registry.host}/open/app:v1`, { credentials: new StaticCredentials({ [registry.host]: { username: 'alice', password: PASSWORD } }) });
      const source = openImage(`${proxy.host}/open/app:v1`, { credentials: new DockerConfigCredentials(join(work, 'none')) });
      try {
        const [resolved, ...layers] = await Promise.all([source.resolve(), ...img.layers.map((l) => readBlob(source, l))]);
        expect(resolved.manifestDigest).toBe(img.manifest.digest);
        expect(layers).toEqual(img.layerBytes);
      } finally {
        await source.close?.();
      }
      expect(proxy.count((r) => r.path === '/v2/' || r.path === '/v2')).toBe(0);
      // Each of the first requests went out without a token, was refused, and went again with one.
      const first = proxy.requests.filter((r) => !r.authorized);
      expect(first.length).toBeGreaterThanOrEqual(1);
      for (const r of first) expect(proxy.count((o) => o.authorized && o.method === r.method && o.path === r.path)).toBeGreaterThanOrEqual(1);
    } finally {
      await proxy.stop();
      await registry.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('Basic auth against the real registry (htpasswd)', () => {
  let registry: TestRegistry;
  let work: string;

  beforeAll(async () => {
    registry = await startRegistry({ basicAuth: { users: { carol: PASSWORD } } });
    work = await mkdtemp(join(tmpdir(), 'clip-oci-basic-'));
    const w = new LayoutWriter(join(work, 'layout'));
    w.tag((await writeImage(w, { layers: [{ c: 'basic' }] })).manifest, 'v1');
    await w.save();
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('pushes and resolves with Basic credentials from a credential store', async () => {
    const d = join(work, 'docker');
    await mkdir(d);
    await writeFile(join(d, 'config.json'), JSON.stringify({ auths: { [`http://${registry.host}`]: { username: 'carol', password: PASSWORD } } }));
    const credentials = new DockerConfigCredentials(d);
    const digest = await pushLayout(join(work, 'layout'), 'v1', `${registry.host}/basic/app:v1`, { credentials });
    const source = openImage(`${registry.host}/basic/app:v1`, { credentials });
    expect((await source.resolve()).manifestDigest).toBe(digest);
    await source.close?.();
  });

  it('without credentials is EAUTH saying none were found', async () => {
    const source = openImage(`${registry.host}/basic/app:v1`, { credentials: new DockerConfigCredentials(join(work, 'none')) });
    await expect(source.resolve()).rejects.toMatchObject({ code: 'EAUTH', message: expect.stringMatching(/Basic.*no credentials/) });
    await source.close?.();
  });
});

describe('a remembered challenge that no longer holds', () => {
  it('is dropped when its token service fails: the request goes without credentials and the registry answers', async () => {
    const registry = await startRegistry();
    const proxy = await startFaultProxy(registry.host);
    const work = await mkdtemp(join(tmpdir(), 'clip-oci-stale-'));
    try {
      const w = new LayoutWriter(join(work, 'layout'));
      const img = await writeImage(w, { layers: [{ s: 'stale' }] });
      w.tag(img.manifest, 'v1');
      await w.save();
      await pushLayout(join(work, 'layout'), 'v1', `${proxy.host}/open/app:v1`);
      const opts = { credentials: new DockerConfigCredentials(join(work, 'none')), retry: { attempts: 1 } };
      // Once, the registry (as the proxy plays it) asked for a token from a service that is gone.
      proxy.inject({ kind: 'reply', status: 401, headers: { 'www-authenticate': 'Bearer realm="http://127.0.0.1:9/token",service="gone"' }, body: '{}' });
      const first = openImage(`${proxy.host}/open/app:v1`, opts);
      await expect(first.resolve()).rejects.toMatchObject({ code: 'ENETWORK', message: expect.stringContaining('token service unreachable') });
      await first.close?.();
      // A later client starts from that challenge, fails to get a token, and asks without one.
      // Requests sent at once all wait on that one failed token fetch: each goes on without one.
      const later = openImage(`${proxy.host}/open/app:v1`, opts);
      const both = await Promise.all([later.resolve(), later.resolve()]);
      expect(both.map((r) => r.manifestDigest)).toEqual([img.manifest.digest, img.manifest.digest]);
      await later.close?.();
    } finally {
      await proxy.stop();
      await registry.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('CLIP_INSECURE_REGISTRIES', () => {
  it('makes the client speak plain HTTP to listed hosts only', async () => {
    const { RegistryClient } = await import('../../src/oci/registry-client.js');
    const saved = process.env.CLIP_INSECURE_REGISTRIES;
    process.env.CLIP_INSECURE_REGISTRIES = 'env.lan:5000';
    try {
      const url = (host: string, insecure: string[] = []) => new RegistryClient(host, { insecureRegistries: insecure }).baseUrl.toString();
      expect(url('env.lan:5000')).toBe('http://env.lan:5000/');
      expect(url('opt.lan', ['opt.lan'])).toBe('http://opt.lan/');
      expect(url('secure.lan:5000')).toBe('https://secure.lan:5000/');
      expect(url('docker.io')).toBe('https://registry-1.docker.io/');
    } finally {
      if (saved === undefined) delete process.env.CLIP_INSECURE_REGISTRIES;
      else process.env.CLIP_INSECURE_REGISTRIES = saved;
    }
  });

  it('is a comma separated list', async () => {
    const { insecureRegistriesFromEnv } = await import('../../src/oci/insecure-registries.js');
    expect(insecureRegistriesFromEnv({ CLIP_INSECURE_REGISTRIES: 'a.lan:5000, b.lan ,' })).toEqual(['a.lan:5000', 'b.lan']);
    expect(insecureRegistriesFromEnv({})).toEqual([]);
  });
});
