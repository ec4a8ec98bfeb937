/**
 * The image config applied as Docker applies it: Env (then --env over it), Entrypoint + Cmd (a
 * COMMAND replaces Cmd; --entrypoint replaces Entrypoint and drops Cmd), WorkingDir, and User
 * ("name", "uid", "name:group", "uid:gid", ...) resolved against the image's /etc/passwd and
 * /etc/group as runc's libcontainer/user does: a name must exist there, a number need not; without
 * an explicit group, the user's passwd group and the groups listing it as a member apply.
 */
import type { ImageConfig } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { readInRoot } from './in-root.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type RuntimeSettings = NonNullable<ImageConfig['config']>;

/** The runtime part of an image config blob (`config`), {} when it has none. */
export function runtimeSettings(configBlob: Buffer | string, image: string): RuntimeSettings {
  let doc: ImageConfig;
  try {
    doc = JSON.parse(configBlob.toString()) as ImageConfig;
  } catch (err) {
    throw new ClipError('ECORRUPT', 'its config blob is not JSON', { object: image, cause: err });
  }
  return doc.config ?? {};
}

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** From passwd when the user is found there: HOME's default. */
  home?: string;
  name?: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    if (line.startsWith('#') || f.length < 7) return [];
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? [{ name: f[0]!, uid, gid, home: f[5]! }] : [];
  });
}

function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    if (line.startsWith('#') || f.length < 4) return [];
    const gid = Number(f[2]);
    return Number.isInteger(gid) ? [{ name: f[0]!, gid, members: f[3]!.split(',').map((m) => m.trim()).filter(Boolean) }] : [];
  });
}

const ID = /^\d+$/;
const MAX_ID = 2 ** 32 - 2;

function numericId(text: string): number | undefined {
  if (!ID.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/**
 * Resolve a User spec ("" is root) against the files of the image mounted at `root`. `image` names
 * the image in errors.
 */
export async function resolveUser(spec: string, root: string, image: string): Promise<ProcessUser> {
  const colon = spec.indexOf(':');
  const userArg = (colon < 0 ? spec : spec.slice(0, colon)) || '0';
  const groupArg = colon < 0 ? '' : spec.slice(colon + 1);
  if (colon >= 0 && groupArg === '') throw new ClipError('EINVAL', `user "${spec}" names no group after ":"`, { object: image });
  const passwd = parsePasswd((await readInRoot(root, '/etc/passwd')) ?? '');
  const uidArg = numericId(userArg);
  const entry = passwd.find((p) => (uidArg !== undefined ? p.uid === uidArg : p.name === userArg));
  if (!entry && uidArg === undefined) throw new ClipError('ENOTFOUND', `user "${userArg}" is not in the image's /etc/passwd`, { object: image });
  const user: ProcessUser = {
    uid: entry?.uid ?? uidArg!, gid: entry?.gid ?? 0, additionalGids: [],
    ...(entry ? { home: entry.home, name: entry.name } : {}),
  };
  const groupText = groupArg !== '' || entry ? await readInRoot(root, '/etc/group') : undefined;
  const groups = parseGroup(groupText ?? '');
  if (groupArg !== '') {
    const gidArg = numericId(groupArg);
    const g = groups.find((x) => (gidArg !== undefined ? x.gid === gidArg : x.name === groupArg));
    if (!g && gidArg === undefined) throw new ClipError('ENOTFOUND', `group "${groupArg}" is not in the image's /etc/group`, { object: image });
    user.gid = g?.gid ?? gidArg!;
  } else if (entry) {
    user.additionalGids = [...new Set(groups.filter((g) => g.members.includes(entry.name)).map((g) => g.gid))].filter((g) => g !== user.gid);
  }
  return user;
}

/** KEY=VALUE list, later keys replacing earlier ones in place (as Docker merges). */
export function mergeEnv(...lists: string[][]): string[] {
  const out = new Map<string, string>();
  for (const list of lists) {
    for (const kv of list) {
      const eq = kv.indexOf('=');
      const key = eq < 0 ? kv : kv.slice(0, eq);
      out.set(key, kv);
    }
  }
  return [...out.values()];
}

/**
 * `--env` values: "K=V", or "K" alone to pass the caller's value of K (dropped when unset), as
 * `docker run -e` takes them.
 */
export function envArgs(values: string[], env: NodeJS.ProcessEnv = process.env): string[] {
  return values.flatMap((v) => {
    if (v.startsWith('=') || v === '') throw new ClipError('EINVAL', 'an --env value needs a name (KEY=VALUE or KEY)', { object: v });
    if (v.includes('=')) return [v];
    const value = env[v];
    return value === undefined ? [] : [`${v}=${value}`];
  });
}

export interface ProcessSettings {
  args: string[];
  env: string[];
  cwd: string;
  user: ProcessUser;
}

export interface ProcessRequest {
  /** COMMAND ARGS after "--": replaces Cmd. */
  command?: string[];
  /** --entrypoint: replaces Entrypoint ("" clears it) and drops the image's Cmd. */
  entrypoint?: string;
  env?: string[];
  user?: string;
  workdir?: string;
  tty?: boolean;
  hostname?: string;
}

/** --workdir, else the image's WorkingDir, else "/". */
export function workingDir(cfg: RuntimeSettings, req: ProcessRequest, image: string): string {
  const cwd = req.workdir || cfg.WorkingDir || '/';
  if (!cwd.startsWith('/')) throw new ClipError('EINVAL', `the working directory "${cwd}" is not an absolute path`, { object: image });
  return cwd;
}

/** The container's process, from the image's settings and the caller's request; `root` is the container's root filesystem. */
export async function processSettings(cfg: RuntimeSettings, req: ProcessRequest, root: string, image: string): Promise<ProcessSettings> {
  const entrypoint = req.entrypoint !== undefined ? (req.entrypoint === '' ? [] : [req.entrypoint]) : (cfg.Entrypoint ?? []);
  const cmd = req.command && req.command.length > 0 ? req.command : req.entrypoint !== undefined ? [] : (cfg.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new ClipError('EINVAL', 'no command to run: the image has no Entrypoint or Cmd; give one after --', { object: image });
  const user = await resolveUser(req.user ?? cfg.User ?? '', root, image);
  const cwd = workingDir(cfg, req, image);
  const base = [`PATH=${DEFAULT_PATH}`, ...(req.hostname ? [`HOSTNAME=${req.hostname}`] : []), ...(req.tty ? ['TERM=xterm'] : [])];
  let env = mergeEnv(base, cfg.Env ?? [], req.env ?? []);
  if (!env.some((e) => e.startsWith('HOME='))) env = [...env, `HOME=${user.home || '/'}`];
  return { args, env, cwd, user };
}
