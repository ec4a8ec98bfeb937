import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a program without blocking the event loop: the FUSE server answering it lives on this
 * thread, so a synchronous spawn (or a synchronous fs call on the mount) would deadlock.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A python3 one-liner (the attr package is not installed; python's os module has the xattr calls). */
export function python(code: string, ...args: string[]): Promise<RunResult> {
  return run('python3', ['-c', code, ...args]);
}

/**
 * argv: MNT REF READERS N SIZES: READERS processes, each N random preads of a size drawn from SIZES
 * (comma-separated), page cache dropped before each, compared with the reference file; prints the
 * mismatches of all of them.
 */
export const RANDOM_PREADS = String.raw`
import os, sys, random
mnt, ref, readers, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sizes = [int(x) for x in sys.argv[5].split(",")]
size = os.stat(ref).st_size
kids = []
for k in range(readers):
    pid = os.fork()
    if pid == 0:
        rng = random.Random(k)
        a = os.open(mnt, os.O_RDONLY); b = os.open(ref, os.O_RDONLY)
        os.posix_fadvise(a, 0, 0, os.POSIX_FADV_RANDOM)
        bad = 0
        for _ in range(n):
            off = rng.randrange(size); m = rng.choice(sizes)
            os.posix_fadvise(a, 0, 0, os.POSIX_FADV_DONTNEED)
            if os.pread(a, m, off) != os.pread(b, m, off): bad += 1
        os._exit(min(bad, 100))
    kids.append(pid)
print(sum(os.waitpid(p, 0)[1] >> 8 for p in kids))
`;

/** n getxattr calls of a missing attribute, one at a time (each a GETXATTR the kernel never caches). argv: PATH N. */
export const XATTRS = String.raw`
import os, sys
for _ in range(int(sys.argv[2])):
    try: os.getxattr(sys.argv[1], "user.missing")
    except OSError: pass
`;

/** `load`'s result, calling `look` every 5 ms while it runs. */
export async function during<T>(load: Promise<T>, look: () => void): Promise<T> {
  let done = false;
  void load.finally(() => (done = true));
  while (!done) {
    look();
    await new Promise((r) => setTimeout(r, 5));
  }
  return load;
}

export { spawn };

const serveChild = fileURLToPath(new URL('./serve-child.ts', import.meta.url));

/** Start serve-child.ts (its own process); resolves with its first line of output and the process. */
export function startServeChild(mountpoint: string, mode = '', uid?: number): Promise<{ line: string; proc: ReturnType<typeof spawn> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', serveChild, mountpoint, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ line: out.split('\n')[0]!, proc });
    });
    proc.on('exit', (code) => reject(new Error(`child exited with ${code}: ${out}`)));
  });
}
