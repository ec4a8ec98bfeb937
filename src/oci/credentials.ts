/**
 * Registry credentials from docker's config.json: `credHelpers`, `auths` (with base64 `auth`) and
 * `credsStore`, helpers run as `docker-credential-<name> get`. DOCKER_CONFIG names the directory.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ClipError } from '../util/errors.js';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker's "identitytoken"). */
  identityToken?: string;
}

export interface CredentialStore {
  get(registry: string): Promise<Credentials | undefined>;
  /**
   * Whether credentials may be configured for `registry`, without running a helper: a client with
   * some asks the registry how to authenticate before its first request (a private repository may
   * answer an anonymous request 404, not 401). Absent: assumed so.
   */
  configured?(registry: string): Promise<boolean>;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const HUB_ALIASES = [DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'];
const HUB_SERVER_URL = 'https://index.docker.io/v1/';
const HELPER_TIMEOUT_MS = 15_000;

/** "https://host:5000/v1/" -> "host:5000"; docker.io's aliases -> "docker.io". */
function normalizeKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
  return HUB_ALIASES.includes(host) ? DOCKER_HUB : host;
}

export function dockerConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG ?? join(homedir(), '.docker');
}

export class DockerConfigCredentials implements CredentialStore {
  private loaded: Promise<DockerConfigFile> | undefined;

  constructor(private readonly configDir: string = dockerConfigDir(), private readonly env: NodeJS.ProcessEnv = process.env) {}

  async get(registry: string): Promise<Credentials | undefined> {
    const config = await this.load();
    const host = normalizeKey(registry);
    const helper = Object.entries(config.credHelpers ?? {}).find(([k]) => normalizeKey(k) === host)?.[1];
    if (helper) return this.runHelper(helper, host);
    const entry = Object.entries(config.auths ?? {}).find(([k]) => normalizeKey(k) === host)?.[1];
    const fromEntry = entry ? decodeEntry(entry, join(this.configDir, 'config.json'), host) : undefined;
    if (fromEntry) return fromEntry;
    if (config.credsStore) return this.runHelper(config.credsStore, host);
    return undefined;
  }

  async configured(registry: string): Promise<boolean> {
    const config = await this.load();
    const host = normalizeKey(registry);
    // A global credsStore may hold any registry's: only its helper could say.
    return config.credsStore !== undefined || [...Object.keys(config.credHelpers ?? {}), ...Object.keys(config.auths ?? {})].some((k) => normalizeKey(k) === host);
  }

  private load(): Promise<DockerConfigFile> {
    this.loaded ??= (async () => {
      const file = join(this.configDir, 'config.json');
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw new ClipError('EINVAL', `cannot read docker config: ${(err as Error).message}`, { object: file, cause: err });
      }
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
        return parsed as DockerConfigFile;
      } catch (err) {
        throw new ClipError('ECORRUPT', `docker config is not valid JSON: ${(err as Error).message}`, { object: file, cause: err });
      }
    })();
    return this.loaded;
  }

  private async runHelper(name: string, host: string): Promise<Credentials | undefined> {
    const program = `docker-credential-${name}`;
    const serverUrl = host === DOCKER_HUB ? HUB_SERVER_URL : host;
    const { code, stdout, stderr } = await runWithInput(program, ['get'], serverUrl, this.env);
    if (code !== 0) {
      // The helper protocol's way of saying "nothing stored for this server".
      if (/credentials not found/i.test(stdout + stderr)) return undefined;
      throw new ClipError('EAUTH', `credential helper failed (exit ${code}): ${stderr.trim() || stdout.trim()}`, { object: program });
    }
    let reply: { Username?: string; Secret?: string };
    try {
      reply = JSON.parse(stdout) as typeof reply;
    } catch {
      throw new ClipError('EAUTH', 'credential helper printed something that is not JSON', { object: program });
    }
    if (!reply.Secret) return undefined;
    if (reply.Username === '<token>') return { identityToken: reply.Secret };
    return { username: reply.Username ?? '', password: reply.Secret };
  }
}

function decodeEntry(entry: AuthEntry, file: string, host: string): Credentials | undefined {
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new ClipError('ECORRUPT', `"auth" for ${host} is not base64 of user:password`, { object: file });
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

function runWithInput(program: string, args: string[], input: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(new ClipError('EAUTH', missing ? 'credential helper not found on PATH' : `cannot run credential helper: ${err.message}`, { object: program, cause: err }));
    });
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.on('error', () => undefined); // a helper that exits without reading stdin
    child.stdin.end(input);
  });
}

/** Credentials given directly (tests, or a caller with its own secret source). */
export class StaticCredentials implements CredentialStore {
  constructor(private readonly byRegistry: Record<string, Credentials>) {}
  async get(registry: string): Promise<Credentials | undefined> {
    return this.byRegistry[normalizeKey(registry)] ?? this.byRegistry[registry];
  }

  async configured(registry: string): Promise<boolean> {
    return (await this.get(registry)) !== undefined;
  }
}
