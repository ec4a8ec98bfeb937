/**
 * What goes into the demo image, from files already on this machine (no network): the dynamic
 * loader, libraries, /bin/sh and a few coreutils (base); the node binary and its libraries
 * (runtime); a small app (app). Each layer only holds what the layers below do not.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ImageSpec, LayerEntry } from '../oci/build/index.js';
import type { Platform } from '../oci/types.js';
import { HostTree } from './host-tree.js';
import { sharedLibraries } from './ldd.js';

/** Bump when the plan changes shape: a cached demo image of another version is rebuilt. */
export const DEMO_VERSION = 'demo-v1';
export const DEMO_TAG = 'demo';

const SHELL = '/bin/sh';
const COREUTILS = ['ls', 'cat', 'echo', 'env', 'uname', 'id', 'head', 'wc', 'sha256sum', 'sleep', 'true', 'mkdir'];
const T = { sec: 1_700_000_000, nsec: 0 };

export const APP_SCRIPT = `'use strict';
const { readdirSync, readFileSync } = require('node:fs');
console.log('hello from the clip demo image');
console.log(\`node \${process.version} on \${process.platform}/\${process.arch}\`);
console.log(\`release: \${readFileSync('/etc/clip-demo-release', 'utf8').trim()}\`);
console.log(\`/app holds: \${readdirSync('/app').sort().join(', ')}\`);
`;

export interface DemoPlan {
  spec: Omit<ImageSpec, 'tag'>;
  /** Changes whenever an input file (size, mtime, inode) or the plan itself changes. */
  fingerprint: string;
  /** Host files copied, per layer, for the report. */
  summary: Array<{ name: string; entries: number; hostFiles: string[] }>;
}

export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', ia32: '386' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

async function addProgram(tree: HostTree, program: string): Promise<string[]> {
  const files = [program, ...(await sharedLibraries(program))];
  for (const f of files) await tree.addPath(f);
  return files;
}

const made = (path: string, content: string, mode = 0o644): LayerEntry => ({ type: 'file', path, content, mode, mtime: T });
const dir = (path: string, mode = 0o755): LayerEntry => ({ type: 'dir', path, mode, mtime: T });

export async function planDemo(nodeBinary = process.execPath): Promise<DemoPlan> {
  const tree = new HostTree();
  const summary: DemoPlan['summary'] = [];

  for (const d of [dir('etc'), dir('tmp', 0o1777), dir('root', 0o700), dir('proc'), dir('dev'), dir('sys'), dir('app')]) tree.addEntry(d);
  tree.addEntry(made('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'));
  tree.addEntry(made('etc/group', 'root:x:0:\nnogroup:x:65534:\n'));
  tree.addEntry(made('etc/clip-demo-release', `clip demo image (${DEMO_VERSION}), assembled from this machine's files\n`));
  const baseFiles = await addProgram(tree, SHELL);
  for (const tool of COREUTILS) {
    const path = `/usr/bin/${tool}`;
    if (await stat(path).then((s) => s.isFile(), () => false)) baseFiles.push(...(await addProgram(tree, path)));
  }
  const base = tree.nextLayer();
  summary.push({ name: 'base', entries: base.length, hostFiles: [...new Set(baseFiles)] });

  const runtimeFiles = await addProgram(tree, nodeBinary);
  const runtime = tree.nextLayer();
  summary.push({ name: 'runtime', entries: runtime.length, hostFiles: runtimeFiles });

  tree.addEntry(made('app/main.js', APP_SCRIPT));
  tree.addEntry(made('app/README', 'The clip demo app: run it with the image\'s default command.\n'));
  const app = tree.nextLayer();
  summary.push({ name: 'app', entries: app.length, hostFiles: [] });

  const pathDirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  if (!pathDirs.includes(dirname(nodeBinary))) pathDirs.unshift(dirname(nodeBinary));
  const spec: DemoPlan['spec'] = {
    platform: hostPlatform(),
    config: {
      Env: [`PATH=${pathDirs.join(':')}`, 'NODE_ENV=production'],
      Entrypoint: [nodeBinary],
      Cmd: ['/app/main.js'],
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.title': 'clip demo', 'clip.demo.version': DEMO_VERSION },
    },
    layers: [
      { entries: base, createdBy: 'clip demo: dynamic loader, libc, /bin/sh, coreutils' },
      { entries: runtime, createdBy: `clip demo: node ${process.version} and its libraries` },
      { entries: app, createdBy: 'clip demo: app' },
    ],
  };
  return { spec, fingerprint: await fingerprint(spec), summary };
}

/** A hash of everything the image is made from: entry metadata, and host files' size and inode. */
async function fingerprint(spec: DemoPlan['spec']): Promise<string> {
  const h = createHash('sha256').update(DEMO_VERSION).update(JSON.stringify(spec.config)).update(JSON.stringify(spec.platform));
  for (const layer of spec.layers) {
    h.update('\0layer');
    for (const e of layer.entries as LayerEntry[]) {
      const { content, ...rest } = e as LayerEntry & { content?: unknown };
      h.update(JSON.stringify(rest));
      if (typeof content === 'string') h.update(content);
      else if (content && typeof content === 'object' && 'path' in content) {
        const st = await stat((content as { path: string }).path, { bigint: true });
        h.update(`${st.size}:${st.ino}:${st.mtimeNs}`);
      }
    }
  }
  return h.digest('hex');
}
