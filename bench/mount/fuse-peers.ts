/**
 * The FUSE request path side by side (issue 15): the debian-python image's tree served four ways,
 * the plain directory (native), squashfuse over an uncompressed squashfs of it, the go-fuse
 * loopback example over the directory, and clip (`clip mount --background`, disk cache warm).
 * Run as root, after `npm run build`, `bench/mount/setup-peers.sh` and
 * `node --import tsx bench/images/debian-python.ts`:
 *   node --import tsx bench/mount/fuse-peers.ts     # ROUNDS=5 XATTR_CALLS=20000 RANDOM_READS=4000 SEQ_MB=100 ARMS=native,squashfuse,go-fuse,clip
 * Clip arms: `clip` (reader threads as CLIP_FUSE_THREADS says, else the default), `clip@N` (N reader
 * threads), `clip-base` (the build at CLIP_BASE, another checkout: before/after in one run),
 * `clip-noslice` / `clip-turns` (this build without the reader threads' short slices / with threads
 * taking turns on a stream of requests: CLIP_FUSE_SLICE_US=0 / CLIP_FUSE_TURNS=1), `clip-128k` (READs of at
 * most 128 KiB, go-fuse's: CLIP_FUSE_MAX_PAGES=32), `clip-nosolo` (no solo reads: CLIP_FUSE_SOLO=0). Each
 * has its own cache directory, so its own clip server.
 *   CLIP_BASE=/path/to/old/checkout ARMS=native,squashfuse,go-fuse,clip-base,clip@1,clip@2,clip@4 ROUNDS=3 ...
 * WORKLOADS=seqCold,seqWarm (keys below) runs only those; PROFILE_DIR=DIR has the clip servers write
 * CPU profiles there (node --cpu-prof) when they exit, 5 s after the run.
 * Every round runs each workload on every arm, in an order that rotates from round to round.
 * Prints a markdown table of medians (min–max) and the FUSE servers' CPU seconds per workload;
 * raw figures go to .tmp/peers/results-*.json.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const WORK = path.join(REPO, '.tmp/peers');
const LAYOUT = path.join(REPO, '.tmp/bench-images/debian-python/layout');
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const XATTR_CALLS = Number(process.env.XATTR_CALLS ?? 20_000);
const RANDOM_READS = Number(process.env.RANDOM_READS ?? 4000);
const SEQ_MB = Number(process.env.SEQ_MB ?? 100);
const ARMS = (process.env.ARMS ?? 'native,squashfuse,go-fuse,clip').split(',') as ArmName[];
const CLIP = path.join(REPO, 'dist/cli/main.js');
const CLIP_BASE = process.env.CLIP_BASE ? path.join(process.env.CLIP_BASE, 'dist/cli/main.js') : undefined;
const GOFUSE = path.join(WORK, 'go-fuse-loopback');
const execFileP = promisify(execFile);
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

type ArmName = 'native' | 'squashfuse' | 'go-fuse' | 'clip' | 'clip-base' | 'clip-noslice' | 'clip-turns' | 'clip-128k' | 'clip-nosolo' | `clip@${number}`;
/** Clip arms of this build with a knob of session 8 turned (what each brings, in one run). */
const ARM_ENV: Partial<Record<ArmName, Record<string, string>>> = {
  'clip-noslice': { CLIP_FUSE_SLICE_US: '0' },
  'clip-turns': { CLIP_FUSE_TURNS: '1' },
  'clip-128k': { CLIP_FUSE_MAX_PAGES: '32' },
  'clip-nosolo': { CLIP_FUSE_SOLO: '0' },
};
interface Arm {
  name: ArmName;
  root: string;
  /** The FUSE server's pid (none for native). */
  pid?: number;
  /** Files holding the bytes the arm serves from (warmed for the "backing in page cache" row). */
  backing: string[];
  stop(): Promise<void>;
}

// ---------------------------------------------------------------- probes (python, run as children)

const XATTR_PROBE = `import os, sys, time
p, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    try: os.getxattr(p, "user.clip.bench.missing", follow_symlinks=False)
    except OSError: pass
print((time.perf_counter() - t) / n * 1e6)`;

const LSTAT_PROBE = `import os, sys, time
root = sys.argv[1]
paths = [os.path.join(root, l.rstrip("\\n")) for l in open(sys.argv[2]) if l.strip()]
t = time.perf_counter()
for p in paths: os.lstat(p)
print((time.perf_counter() - t) / len(paths) * 1e6)`;

/** Readers processes, each n preads of 4 KiB at random 4 KiB-aligned offsets over the files (weighted by size). */
const PREAD_PROBE = `import os, sys, time, random, bisect
root, listfile, readers, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = [os.path.join(root, l.rstrip("\\n")) for l in open(listfile) if l.strip()]
r, w = os.pipe()
kids = []
for k in range(readers):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        rng = random.Random(1000 + k)
        fds = []; sizes = []
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            fds.append(fd); sizes.append(os.fstat(fd).st_size // 4096)
        cum = []; c = 0
        for s in sizes: c += s; cum.append(c)
        plan = []
        for _ in range(n):
            x = rng.randrange(c); i = bisect.bisect_right(cum, x)
            plan.append((fds[i], (x - (cum[i - 1] if i else 0)) * 4096))
        os.read(r, 1)
        for fd, off in plan: os.pread(fd, 4096, off)
        os._exit(0)
    kids.append(pid)
os.close(r)
time.sleep(0.5)
t = time.perf_counter()
os.write(w, b"x" * readers)
for pid in kids: os.waitpid(pid, 0)
print(readers * n / (time.perf_counter() - t))`;

/** Reads the files in order, 128 KiB at a time into one buffer (as cat does): MB/s. */
const SEQ_PROBE = `import os, sys, time
root = sys.argv[1]
files = [os.path.join(root, l.rstrip("\\n")) for l in open(sys.argv[2]) if l.strip()]
buf = bytearray(131072); n = 0
t = time.perf_counter()
for p in files:
    with open(p, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k: break
            n += k
print(n / 1e6 / (time.perf_counter() - t))`;

// ---------------------------------------------------------------- helpers

function dropCaches(level: 2 | 3): void {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', String(level));
}

async function sh(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('sh', ['-c', script, 'sh', ...args], { maxBuffer: 1 << 30 });
  return stdout;
}

async function timed(script: string, ...args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  await sh(script, ...args);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** The block device (its /proc/diskstats name) holding `dir`: what the cold workloads read from. */
function diskOf(dir: string): string {
  const dev = statSync(dir).dev;
  const [major, minor] = [Math.floor(dev / 256) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00)];
  const line = readFileSync('/proc/diskstats', 'utf8').split('\n').find((l) => { const f = l.trim().split(/\s+/); return Number(f[0]) === major && Number(f[1]) === minor; });
  return line?.trim().split(/\s+/)[2] ?? '';
}

/** MB read so far from the device `name` (/proc/diskstats: sectors read, 512 bytes each); 0 when unknown. */
function diskReadMb(name: string): number {
  const line = readFileSync('/proc/diskstats', 'utf8').split('\n').find((l) => l.trim().split(/\s+/)[2] === name);
  return line ? Number(line.trim().split(/\s+/)[5]) * 512 / 1e6 : 0;
}

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // utime, stime (fields 14 and 15)
}

async function waitFor(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

async function unmountDir(dir: string): Promise<void> {
  if (isMounted(dir)) await execFileP('umount', [dir]).catch(() => execFileP('umount', ['-l', dir]));
}

/** The server's resident memory (MB) and thread count, from /proc. */
function serverMemory(pid: number): { rssMb: number; threads: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: field('VmRSS') / 1024, threads: field('Threads') };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------- arms

async function prepareTree(): Promise<string> {
  const bundle = path.join(WORK, 'bundle');
  const rootfs = path.join(bundle, 'rootfs');
  if (!existsSync(path.join(rootfs, 'usr/bin/python3'))) {
    await rm(bundle, { recursive: true, force: true });
    console.log('unpacking the image with umoci ...');
    await execFileP('umoci', ['unpack', '--image', `${LAYOUT}:latest`, bundle]);
  }
  return rootfs;
}

async function prepareSquashfs(rootfs: string): Promise<string> {
  const img = path.join(WORK, 'rootfs-uncompressed.squashfs');
  if (!existsSync(img)) {
    console.log('mksquashfs (uncompressed) ...');
    await execFileP('mksquashfs', [rootfs, `${img}.part`, '-noI', '-noD', '-noF', '-noX', '-no-progress', '-quiet', '-noappend']);
    await execFileP('mv', [`${img}.part`, img]);
  }
  return img;
}

async function foreground(cmd: string, args: string[], mnt: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  let exited = false;
  child.on('exit', () => { exited = true; });
  await waitFor(`${cmd} to mount ${mnt}`, () => exited || isMounted(mnt));
  if (exited) throw new Error(`${cmd} exited before mounting ${mnt}`);
  return child;
}

async function startArms(rootfs: string, squashfs: string): Promise<Arm[]> {
  const arms: Arm[] = [];
  for (const name of ARMS) {
    const mnt = path.join(WORK, `mnt-${name}`);
    if (name !== 'native') {
      await mkdir(mnt, { recursive: true });
      await unmountDir(mnt);
    }
    if (name === 'native') {
      arms.push({ name, root: rootfs, backing: [], stop: async () => {} });
    } else if (name === 'squashfuse') {
      const child = await foreground('squashfuse', ['-f', squashfs, mnt], mnt);
      arms.push({ name, root: mnt, pid: child.pid, backing: [squashfs], stop: () => unmountDir(mnt) });
    } else if (name === 'go-fuse') {
      const child = await foreground(GOFUSE, ['-q', '-ro', mnt, rootfs], mnt);
      arms.push({ name, root: mnt, pid: child.pid, backing: [], stop: () => unmountDir(mnt) });
    } else {
      const cacheDir = path.join(WORK, name === 'clip' ? 'clip-cache' : `clip-cache-${name.replace('@', '-t')}`);
      const cli = name === 'clip-base' ? CLIP_BASE! : CLIP;
      const threads = /^clip@(\d+)$/.exec(name)?.[1];
      const env = { ...process.env, ...(threads ? { CLIP_FUSE_THREADS: threads } : {}), ...ARM_ENV[name] };
      // PROFILE_DIR: the clip server (started by this command, through its holder) writes V8 CPU
      // profiles there when it exits (bench/mount/prof-top.ts reads them).
      const prof = process.env.PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PROFILE_DIR}`] : [];
      const { stdout } = await execFileP('node', [...prof, cli, 'mount', `oci:${LAYOUT}:latest`, mnt, '--background', '--json', '--cache-dir', cacheDir], { maxBuffer: 1 << 20, env });
      const pid = Number((JSON.parse(stdout) as { pid: number }).pid);
      console.log(`clip mounted ${mnt}, server pid ${pid}; warming the disk cache (reading every file once) ...`);
      await sh('find "$1" -type f -exec cat {} + > /dev/null', mnt);
      const layerDir = path.join(cacheDir, 'layers');
      const backing = (await readdir(layerDir)).map((f) => path.join(layerDir, f)).filter((f) => !f.endsWith('.json') && statSync(f).isFile());
      console.log(`  disk cache: ${backing.map((f) => `${path.basename(f)} ${(statSync(f).size / 1e6).toFixed(1)} MB`).join(', ')}`);
      arms.push({
        name, root: mnt, pid, backing,
        stop: async () => { await execFileP('node', [cli, 'unmount', mnt, '--cache-dir', cacheDir]).catch(() => unmountDir(mnt)); },
      });
    }
  }
  return arms;
}

// ---------------------------------------------------------------- workloads

interface Workload {
  key: string;
  label: string;
  unit: string;
  /** Higher is better (IOPS, MB/s) rather than lower (µs, s). */
  higher: boolean;
  run(arm: Arm): Promise<number>;
}

function workloads(lists: { all: string; seq: string; seqBytes: number; nativeRoot: string }): Workload[] {
  const py = async (script: string, ...args: string[]): Promise<number> =>
    Number((await execFileP('python3', ['-c', script, ...args], { maxBuffer: 1 << 20 })).stdout.trim());
  const catSeq = 'cd "$1" && tr "\\n" "\\0" < "$2" | xargs -0 cat > /dev/null';
  return [
    {
      key: 'xattr', label: 'getxattr round trip of a missing xattr (never cached by the kernel)', unit: 'µs', higher: false,
      run: (a) => py(XATTR_PROBE, path.join(a.root, 'usr/bin/python3.11'), String(XATTR_CALLS)),
    },
    {
      key: 'lstat', label: 'lstat of an uncached existing path (`drop_caches` 2 first)', unit: 'µs', higher: false,
      run: async (a) => { dropCaches(2); return py(LSTAT_PROBE, a.root, lists.all); },
    },
    {
      key: 'pread1', label: '4 KiB random preads, page cache cold, one reader', unit: '/s', higher: true,
      run: async (a) => { dropCaches(3); return py(PREAD_PROBE, a.root, lists.seq, '1', String(RANDOM_READS)); },
    },
    {
      key: 'pread8', label: 'the same, 8 readers', unit: '/s', higher: true,
      run: async (a) => { dropCaches(3); return py(PREAD_PROBE, a.root, lists.seq, '8', String(Math.ceil(RANDOM_READS / 4))); },
    },
    {
      key: 'lsR', label: '`ls -lR`, cold', unit: 's', higher: false,
      run: async (a) => { dropCaches(3); return timed('ls -lR "$1" > /dev/null', a.root); },
    },
    {
      key: 'python', label: "`chroot TREE python3 -c 'import json, email, http.client'`, page cache cold", unit: 's', higher: false,
      run: async (a) => { dropCaches(3); return timed('chroot "$1" /usr/bin/python3 -c "import json, email, http.client"', a.root); },
    },
    {
      key: 'seqCold', label: 'sequential read of the largest files, page cache cold', unit: 'MB/s', higher: true,
      run: async (a) => { dropCaches(3); return py(SEQ_PROBE, a.root, lists.seq); },
    },
    {
      key: 'seqWarm', label: 'the same with the backing file(s) in page cache (FUSE overhead alone)', unit: 'MB/s', higher: true,
      run: async (a) => {
        dropCaches(3);
        // The backing bytes into the page cache; the mount's own page cache stays empty.
        if (a.backing.length) await sh('cat "$@" > /dev/null', ...a.backing);
        else await sh(catSeq, lists.nativeRoot, lists.seq);
        return py(SEQ_PROBE, a.root, lists.seq);
      },
    },
  ];
}

function fmt(v: number, unit: string): string {
  if (unit === 'µs') return `${v.toFixed(v < 10 ? 1 : 0)} µs`;
  if (unit === 's') return `${v.toFixed(2)} s`;
  if (unit === '/s') return `${Math.round(v).toLocaleString('en-US').replace(/,/g, ' ')}/s`;
  return `${Math.round(v).toLocaleString('en-US').replace(/,/g, ' ')} MB/s`;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (mounts, drop_caches, chroot)');
  if (!existsSync(path.join(LAYOUT, 'index.json'))) throw new Error(`no image at ${LAYOUT}: run node --import tsx bench/images/debian-python.ts`);
  if (ARMS.includes('go-fuse') && !existsSync(GOFUSE)) throw new Error('no go-fuse loopback: run bench/mount/setup-peers.sh');
  if (ARMS.some((a) => a.startsWith('clip')) && !existsSync(CLIP)) throw new Error('no dist/: run npm run build');
  if (ARMS.includes('clip-base') && !(CLIP_BASE && existsSync(CLIP_BASE))) throw new Error('clip-base: set CLIP_BASE to a built checkout');
  await mkdir(WORK, { recursive: true });
  const rootfs = await prepareTree();
  const squashfs = ARMS.includes('squashfuse') ? await prepareSquashfs(rootfs) : '';

  // Path lists, relative to a tree's root: every entry (lstat), and the largest regular files,
  // one per inode, up to SEQ_MB (the sequential and random-read workloads).
  const all = (await sh('cd "$1" && find . -mindepth 1 | sort', rootfs)).trim().split('\n');
  const files = (await sh('cd "$1" && find . -type f -printf "%i %s %p\\n"', rootfs)).trim().split('\n')
    .map((l) => { const [ino, size, ...p] = l.split(' '); return { ino: ino!, size: Number(size), p: p.join(' ') }; })
    .sort((a, b) => b.size - a.size);
  const seen = new Set<string>();
  const seq: string[] = [];
  let seqBytes = 0;
  for (const f of files) {
    if (seen.has(f.ino) || seqBytes >= SEQ_MB * 1e6) continue;
    seen.add(f.ino); seq.push(f.p); seqBytes += f.size;
  }
  const allList = path.join(WORK, 'paths-all.txt');
  const seqList = path.join(WORK, 'paths-largest.txt');
  writeFileSync(allList, all.join('\n') + '\n');
  writeFileSync(seqList, seq.join('\n') + '\n');
  const only = process.env.WORKLOADS?.split(',');
  const wls = workloads({ all: allList, seq: seqList, seqBytes, nativeRoot: rootfs }).filter((w) => !only || only.includes(w.key));
  const seqCold = wls.find((w) => w.key === 'seqCold');
  if (seqCold) seqCold.label =
    `sequential read (128 KiB reads, as \`cat\`) of the ${seq.length} largest files (${(seqBytes / 1e6).toFixed(0)} MB), page cache cold`;
  console.log(`${all.length} paths; ${seq.length} largest files, ${(seqBytes / 1e6).toFixed(1)} MB; ${ROUNDS} rounds`);

  const arms = await startArms(rootfs, squashfs);
  const results: Record<string, Record<string, { value: number[]; cpu: number[]; diskMb: number[] }>> = {};
  const disk = diskOf(WORK);
  const rss: Record<string, { rssMb: number; threads: number }> = {};
  try {
    for (const w of wls) {
      results[w.key] = {};
      for (const a of arms) {
        await w.run(a); // once untimed: the same state (e.g. the server's code paths warm) for every round
        results[w.key]![a.name] = { value: [], cpu: [], diskMb: [] };
      }
    }
    for (let r = 0; r < ROUNDS; r++) {
      const order = arms.map((_, i) => arms[(i + r) % arms.length]!);
      for (const w of wls) {
        for (const a of order) {
          const before = cpuSeconds(a.pid);
          const readBefore = diskReadMb(disk);
          const v = await w.run(a);
          const cpu = cpuSeconds(a.pid) - before;
          const diskMb = diskReadMb(disk) - readBefore;
          results[w.key]![a.name]!.value.push(v);
          results[w.key]![a.name]!.cpu.push(cpu);
          results[w.key]![a.name]!.diskMb.push(diskMb);
          console.log(`round ${r + 1} ${w.key.padEnd(7)} ${a.name.padEnd(10)} ${fmt(v, w.unit).padStart(12)}  server CPU ${cpu.toFixed(2)} s  disk ${diskMb.toFixed(1)} MB read`);
        }
      }
    }
    for (const a of arms) {
      if (a.name.startsWith('clip') && a.pid) rss[a.name] = serverMemory(a.pid);
    }
  } finally {
    for (const a of arms) await a.stop().catch((e: unknown) => console.error(`stopping ${a.name}: ${String(e)}`));
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(WORK, `results-${stamp}.json`), JSON.stringify({ ROUNDS, XATTR_CALLS, RANDOM_READS, seqFiles: seq.length, seqBytes, results, rss }, null, 1));

  const cell = (w: Workload, a: ArmName): string => {
    const xs = results[w.key]?.[a]?.value;
    if (!xs?.length) return '—';
    return `${fmt(median(xs), w.unit)} (${fmt(Math.min(...xs), w.unit)}–${fmt(Math.max(...xs), w.unit)})`;
  };
  const names = arms.map((a) => a.name);
  const clips = names.filter((n) => n.startsWith('clip'));
  const peers = names.filter((n) => n === 'go-fuse' || n === 'squashfuse');
  const ratio = (w: Workload, a: string, b: string): string => {
    const x = results[w.key]?.[a]?.value;
    const y = results[w.key]?.[b]?.value;
    if (!x?.length || !y?.length) return '—';
    const r = w.higher ? median(x) / median(y) : median(y) / median(x);
    return `${r.toFixed(2)}×`;
  };
  const vsCols = clips.flatMap((c) => peers.map((p) => `${c} vs ${p}`));
  console.log(`\n| workload | ${names.join(' | ')} | ${vsCols.join(' | ')} |\n|---|${names.map(() => '---|').join('')}${vsCols.map(() => '---|').join('')}`);
  for (const w of wls) {
    const vs = clips.flatMap((c) => peers.map((p) => ratio(w, c, p)));
    console.log(`| ${w.label} | ${names.map((n) => cell(w, n)).join(' | ')} | ${vs.join(' | ')} |`);
  }
  console.log('\n(ratios: above 1× the clip arm is better, medians)');
  for (const [name, m] of Object.entries(rss)) console.log(`${name}: server RSS ${m.rssMb.toFixed(0)} MB, ${m.threads} threads`);
  const servers = arms.filter((a) => a.pid !== undefined).map((a) => a.name);
  console.log(`\nServer CPU seconds per workload run, median (min–max):\n\n| workload | ${servers.join(' | ')} |\n|---|${servers.map(() => '---|').join('')}`);
  for (const w of wls) {
    const cells = servers.map((n) => {
      const xs = results[w.key]![n]!.cpu;
      return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
    });
    console.log(`| ${w.key} | ${cells.join(' | ')} |`);
  }
  console.log(`\nMB read from ${disk} per workload run (the whole device: other programs' reads too), median (min–max):\n\n| workload | ${names.join(' | ')} |\n|---|${names.map(() => '---|').join('')}`);
  for (const w of wls) {
    const cells = names.map((n) => {
      const xs = results[w.key]![n]!.diskMb;
      return `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
    });
    console.log(`| ${w.key} | ${cells.join(' | ')} |`);
  }
  // Per request where the workload's request count is known: one GETXATTR per call; at most one
  // 4 KiB READ per pread (fewer when a page was already cached).
  const per = (key: string, n: number): string => servers.map((a) => `${a} ${results[key] ? (median(results[key][a]!.cpu) / n * 1e6).toFixed(0) : '—'} µs`).join(', ');
  console.log(`\nServer CPU per GETXATTR: ${per('xattr', XATTR_CALLS)}; per 4 KiB pread (one reader): ${per('pread1', RANDOM_READS)}`);
}

await main();
