/**
 * What goes into the demo image, from files already on this machine (no network): the dynamic
 * loader, libraries, /bin/sh and a few coreutils (base); python3 with its standard library and the
 * libraries of its extension modules (runtime); a data set of generated files the program lists but
 * never reads (data); a small program (app). Each layer only holds what the layers below do not.
 * The program needs a small part of the image: that is what the demo shows clip serving lazily.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { seededContent, type ImageSpec, type LayerEntry } from '../oci/build/index.js';
import type { Platform } from '../oci/types.js';
import { ClipError } from '../util/errors.js';
import { HostTree } from './host-tree.js';
import { sharedLibraries } from './ldd.js';

/** Bump when the plan changes shape: a cached demo image of another version is rebuilt. */
export const DEMO_VERSION = 'demo-v2';
export const DEMO_TAG = 'demo';

const SHELL = '/bin/sh';
const COREUTILS = ['ls', 'cat', 'echo', 'env', 'uname', 'id', 'head', 'wc', 'sha256sum', 'sleep', 'true', 'mkdir'];
const T = { sec: 1_700_000_000, nsec: 0 };
/** Where python3 is looked for: Debian's (scripts/install-system-deps.sh installs it) first. */
const PYTHONS = ['/usr/bin/python3', '/usr/local/bin/python3'];
/** Parts of the standard library no program of the demo needs: tests, GUI, the static libpython. */
const STDLIB_SKIP = /^(test|tests|idlelib|tkinter|turtledemo|ensurepip|site-packages|dist-packages|config-[^/]*)(\/|$)|(^|\/)tests?\//;
/** The data layer: generated files the program lists (metadata, from the index) and never reads. */
export const DATA_FILES = 4;
export const DATA_FILE_BYTES = 12 * 1024 * 1024;

/** The demo program. */
export const APP_PATH = '/app/main.py';
export const APP_SCRIPT = `import json
import os
import sys

print('hello from the clip demo image')
print(f'python {sys.version.split()[0]} on {sys.platform}/{os.uname().machine}')
with open('/etc/clip-demo-release') as f:
    print(f'release: {f.read().strip()}')
with open('/app/config.json') as f:
    config = json.load(f)
print(f"config: {config['greeting']}")
print(f"/app holds: {', '.join(sorted(os.listdir('/app')))}")
names = sorted(os.listdir('/data'))
total = sum(os.stat(os.path.join('/data', n)).st_size for n in names)
print(f'/data holds {len(names)} files, {total / 2**20:.1f} MiB: listed, never read')
`;
export const APP_CONFIG = '{"greeting": "read from /app/config.json by json.load"}\n';

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

/** The host's python3: its real binary, standard library and version, as it reports them. */
export async function findPython(candidates: readonly string[] = PYTHONS): Promise<{ binary: string; stdlib: string; version: string }> {
  for (const candidate of candidates) {
    if (!(await stat(candidate).then((s) => s.isFile(), () => false))) continue;
    try {
      const { stdout } = await promisify(execFile)(candidate, ['-I', '-c', 'import sys, sysconfig; print(sysconfig.get_path("stdlib")); print(sys.version.split()[0])']);
      const [stdlib, version] = stdout.trim().split('\n');
      if (stdlib && version) return { binary: candidate, stdlib, version };
    } catch {
      // not a working python: try the next
    }
  }
  throw new ClipError('ENOTFOUND', `the demo image is built around this machine's python3, and none runs here (looked for ${candidates.join(', ')}; on Debian: apt-get install python3)`);
}

export interface PlanOptions {
  /** python3 binaries to look for, in order (default: Debian's). */
  pythons?: readonly string[];
}

export async function planDemo(opts: PlanOptions = {}): Promise<DemoPlan> {
  const tree = new HostTree();
  const summary: DemoPlan['summary'] = [];

  for (const d of [dir('etc'), dir('tmp', 0o1777), dir('root', 0o700), dir('proc'), dir('dev'), dir('sys')]) tree.addEntry(d);
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

  const python = await findPython(opts.pythons);
  const runtimeFiles = await addProgram(tree, python.binary);
  const stdlibFiles = await tree.addTree(python.stdlib, (rel) => STDLIB_SKIP.test(rel));
  // Extension modules (lib-dynload) need their own libraries; one whose library is missing here is
  // left without it (the demo program imports none of those).
  for (const f of stdlibFiles.filter((p) => p.endsWith('.so'))) {
    for (const lib of await sharedLibraries(f).catch(() => [])) await tree.addPath(lib);
  }
  runtimeFiles.push(python.stdlib);
  const runtime = tree.nextLayer();
  summary.push({ name: 'runtime', entries: runtime.length, hostFiles: runtimeFiles });

  tree.addEntry(dir('data'));
  for (let i = 1; i <= DATA_FILES; i++) {
    tree.addEntry({ type: 'file', path: `data/part-${i}.bin`, content: seededContent(`clip-demo/data-${i}`, DATA_FILE_BYTES, { compressible: 0.5 }), mode: 0o644, mtime: T });
  }
  const data = tree.nextLayer();
  summary.push({ name: 'data', entries: data.length, hostFiles: [] });

  tree.addEntry(dir('app'));
  tree.addEntry(made('app/main.py', APP_SCRIPT));
  tree.addEntry(made('app/config.json', APP_CONFIG));
  tree.addEntry(made('app/README', 'The clip demo program: run it with the image\'s default command.\n'));
  const app = tree.nextLayer();
  summary.push({ name: 'app', entries: app.length, hostFiles: [] });

  const spec: DemoPlan['spec'] = {
    platform: hostPlatform(),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8'],
      // -I: the host's PYTHON* variables and user site-packages stay out.
      Entrypoint: [python.binary, '-I'],
      Cmd: [APP_PATH],
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.title': 'clip demo', 'clip.demo.version': DEMO_VERSION },
    },
    layers: [
      { entries: base, createdBy: 'clip demo: dynamic loader, libc, /bin/sh, coreutils' },
      { entries: runtime, createdBy: `clip demo: python ${python.version}, its standard library and libraries` },
      { entries: data, createdBy: `clip demo: a data set the program does not read (${DATA_FILES} generated files)` },
      { entries: app, createdBy: 'clip demo: the program' },
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
      else if (content && typeof content === 'object' && 'generate' in content) h.update(`generated:${String((content as unknown as { size: number }).size)}`);
      else if (content && typeof content === 'object' && 'path' in content) {
        const st = await stat((content as { path: string }).path, { bigint: true });
        h.update(`${st.size}:${st.ino}:${st.mtimeNs}`);
      }
    }
  }
  return h.digest('hex');
}
