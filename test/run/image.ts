/**
 * The images `clip run` is tested with, built by our own builder from this machine's programs (the
 * dynamic loader, libc, /bin/sh and coreutils, copied with the libraries they load): one whose
 * config sets Env, WorkingDir, User (a name from its /etc/passwd), Entrypoint and Cmd, with a home
 * directory and files only that user may read; and a bare one, with no config at all (root, "/").
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HostTree, sharedLibraries } from '../../src/demo/index.js';
import { hostPlatform } from '../../src/demo/plan.js';
import { writeImage, type LayerEntry } from '../../src/oci/build/index.js';

const TOOLS = [
  'cat', 'echo', 'env', 'id', 'ls', 'mkdir', 'pwd', 'printf', 'rm', 'sleep', 'stat', 'touch', 'true', 'false',
  'tty', 'stty', 'hostname', 'grep', 'kill', 'readlink', 'head', 'wc', 'sort', 'tr',
];
const T = { sec: 1_700_000_000 };

export const APP_UID = 1000;
export const APP_GID = 1000;
/** The content of /home/app/secret (mode 0600, the app user's). */
export const SECRET = 'only app may read this\n';

const dir = (path: string, mode = 0o755, uid = 0, gid = 0): LayerEntry => ({ type: 'dir', path, mode, uid, gid, mtime: T });
const file = (path: string, content: string, mode = 0o644, uid = 0, gid = 0): LayerEntry => ({ type: 'file', path, content, mode, uid, gid, mtime: T });

export interface RunImages {
  /** oci:DIR:app: the image with a full config (User "app"). */
  app: string;
  /** oci:DIR:bare: the same files, no config. */
  bare: string;
  /** The app image's Env. */
  env: string[];
}

export async function buildRunImages(layoutDir: string): Promise<RunImages> {
  const tree = new HostTree();
  for (const d of [dir('etc'), dir('tmp', 0o1777), dir('root', 0o700), dir('proc'), dir('dev'), dir('sys'), dir('home')]) tree.addEntry(d);
  tree.addEntry(file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'));
  tree.addEntry(file('etc/group', 'root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n'));
  for (const program of ['/bin/sh', ...TOOLS.map((t) => `/usr/bin/${t}`)]) {
    if (!(await stat(program).then((s) => s.isFile(), () => false))) continue;
    for (const f of [program, ...(await sharedLibraries(program))]) await tree.addPath(f);
  }
  const base = tree.nextLayer();
  tree.addEntry(dir('home/app', 0o700, APP_UID, APP_GID));
  tree.addEntry(file('home/app/secret', SECRET, 0o600, APP_UID, APP_GID));
  tree.addEntry(dir('srv', 0o755));
  tree.addEntry(dir('srv/data', 0o755, APP_UID, APP_GID));
  tree.addEntry(file('srv/data/hello', 'hello from the image\n', 0o644, APP_UID, APP_GID));
  tree.addEntry(file('srv/greet.sh', '#!/bin/sh\necho "greet: $GREETING from $(pwd) as $(id -un)"\n', 0o755));
  const app = tree.nextLayer();
  const env = ['PATH=/usr/local/bin:/usr/bin:/bin', 'GREETING=hello', 'LANG=C.UTF-8'];
  await writeImage(layoutDir, {
    platform: hostPlatform(), tag: 'app',
    config: { Env: env, Entrypoint: ['/bin/sh', '-c'], Cmd: ['/srv/greet.sh'], WorkingDir: '/srv/data', User: 'app' },
    layers: [{ entries: base, createdBy: 'base: /bin/sh and coreutils' }, { entries: app, createdBy: 'app' }],
  });
  await writeImage(layoutDir, { platform: hostPlatform(), tag: 'bare', layers: [{ entries: base, createdBy: 'base' }] });
  return { app: `oci:${layoutDir}:app`, bare: `oci:${layoutDir}:bare`, env };
}

export function layoutIn(dir: string): string {
  return join(dir, 'layout');
}
