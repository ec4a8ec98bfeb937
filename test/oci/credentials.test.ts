import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerConfigCredentials, dockerConfigDir } from '../../src/oci/credentials.js';

let dir: string;
let binDir: string;
let env: NodeJS.ProcessEnv;

// A real credential helper program speaking docker's protocol: server URL on stdin, JSON on stdout.
const HELPER = `#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
echo "$server" >> "$HELPER_LOG"
case "$server" in
  helped.example) echo '{"ServerURL":"helped.example","Username":"hu","Secret":"hs"}' ;;
  stored.example) echo '{"ServerURL":"stored.example","Username":"<token>","Secret":"refresh-tok"}' ;;
  https://index.docker.io/v1/) echo '{"Username":"hubuser","Secret":"hubpass"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clip-creds-'));
  binDir = join(dir, 'bin');
  await mkdir(binDir);
  for (const name of ['docker-credential-fake', 'docker-credential-store']) {
    await writeFile(join(binDir, name), HELPER);
    await chmod(join(binDir, name), 0o755);
  }
  await writeFile(join(binDir, 'docker-credential-broken'), '#!/bin/sh\necho "helper exploded" >&2\nexit 7\n');
  await chmod(join(binDir, 'docker-credential-broken'), 0o755);
  env = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? ''}`, HELPER_LOG: join(dir, 'helper.log') };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configDir(name: string, config: unknown): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return d;
}

describe('docker config.json credentials', () => {
  it('reads auths: base64 auth, username/password, identity token, docker hub aliases', async () => {
    const d = await configDir('auths', {
      auths: {
        'reg.example:5000': { auth: Buffer.from('alice:pa:ss').toString('base64') },
        'https://plain.example/v1/': { username: 'bob', password: 'pw' },
        'oauth.example': { identitytoken: 'idt' },
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:hubpw').toString('base64') },
        'empty.example': {},
      },
    });
    const c = new DockerConfigCredentials(d, env);
    expect(await c.get('reg.example:5000')).toEqual({ username: 'alice', password: 'pa:ss' });
    expect(await c.get('plain.example')).toEqual({ username: 'bob', password: 'pw' });
    expect(await c.get('oauth.example')).toEqual({ identityToken: 'idt' });
    expect(await c.get('docker.io')).toEqual({ username: 'hub', password: 'hubpw' });
    expect(await c.get('empty.example')).toBeUndefined();
    expect(await c.get('other.example')).toBeUndefined();
  });

  it('asks credHelpers first and credsStore for the rest, through real helper programs', async () => {
    const d = await configDir('helpers', {
      credHelpers: { 'helped.example': 'fake', 'docker.io': 'fake', 'broken.example': 'broken' },
      credsStore: 'store',
      auths: { 'listed.example': { auth: Buffer.from('l:p').toString('base64') } },
    });
    const c = new DockerConfigCredentials(d, env);
    expect(await c.get('helped.example')).toEqual({ username: 'hu', password: 'hs' });
    expect(await c.get('docker.io')).toEqual({ username: 'hubuser', password: 'hubpass' });
    expect(await c.get('listed.example')).toEqual({ username: 'l', password: 'p' });
    expect(await c.get('stored.example')).toEqual({ identityToken: 'refresh-tok' });
    expect(await c.get('nothing.example')).toBeUndefined();
    await expect(c.get('broken.example')).rejects.toMatchObject({ code: 'EAUTH', message: expect.stringMatching(/docker-credential-broken.*helper exploded/) });
    const log = (await readFile(join(dir, 'helper.log'), 'utf8')).trim().split('\n');
    expect(log).toEqual(['helped.example', 'https://index.docker.io/v1/', 'stored.example', 'nothing.example']);
  });

  it('names a helper that is not installed', async () => {
    const d = await configDir('missing-helper', { credsStore: 'nonexistent' });
    await expect(new DockerConfigCredentials(d, env).get('x.example')).rejects.toThrow(/docker-credential-nonexistent.*not found/);
  });

  it('treats a missing config as no credentials and a malformed one as ECORRUPT naming the file', async () => {
    expect(await new DockerConfigCredentials(join(dir, 'absent'), env).get('x.example')).toBeUndefined();
    const d = await configDir('bad', '{ not json');
    await expect(new DockerConfigCredentials(d, env).get('x.example')).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining(join(d, 'config.json')) });
  });

  it('honours DOCKER_CONFIG', () => {
    expect(dockerConfigDir({ DOCKER_CONFIG: '/some/where' })).toBe('/some/where');
    expect(dockerConfigDir({ HOME: '/h' })).toMatch(/\.docker$/);
  });
});
