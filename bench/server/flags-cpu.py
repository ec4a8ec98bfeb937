#!/usr/bin/env python3
"""The server's CPU per random 4 KiB pread, for V8 flag variants of the same build (run by hand, as
root, after `npm run build`):
  bench/server/flags-cpu.py ROUNDS PREADS CLI 'FLAGS A' 'FLAGS B' ...
Each arm is a server of its own (its own cache directory) with CLIP_SERVER_V8_FLAGS set to the
arm's flags and one mount of debian-python, whose python3 library is read once whole first (the
disk cache warm; 5 s of quiet then ends every mount's startup recording). Each round, for each arm in an order that rotates: the page cache of the files
read is dropped (posix_fadvise DONTNEED on each), then PREADS random 4 KiB preads over the regular
files under usr/lib/python3* (a fixed seed per round: every arm reads the same offsets), and the
server's CPU time (utime + stime of all its threads, /proc/PID/stat, 10 ms ticks) over them.
Prints µs of server CPU per pread, medians (min-max) per arm, and the load.
"""
import glob, os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
LAYOUT = os.path.join(ROOT, '.tmp/bench-images/debian-python/layout')
TICK = os.sysconf('SC_CLK_TCK')


def cpu(pid: int) -> float:
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def main() -> None:
    rounds, preads, cli, flags = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    w = tempfile.mkdtemp(prefix='flags-cpu-', dir=os.path.join(ROOT, '.tmp'))
    arms = []
    try:
        for i, fl in enumerate(flags):
            cache, mnt = f'{w}/cache{i}', f'{w}/mnt{i}'
            os.makedirs(mnt)
            env = dict(os.environ, CLIP_SERVER_V8_FLAGS=fl)
            subprocess.run(['node', cli, 'mount', f'oci:{LAYOUT}:latest', mnt, '--background', '--cache-dir', cache], env=env, check=True, stdout=subprocess.DEVNULL)
            pid = int(open(glob.glob(f'{cache}/mounts/*.pid')[0]).readline())
            files = [p for p in glob.glob(f'{mnt}/usr/lib/python3*/**/*', recursive=True) if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) >= 4096]
            for p in files:  # the disk cache warm: the READs measured are served from it
                with open(p, 'rb') as f:
                    while f.read(1 << 20):
                        pass
            arms.append((fl, cache, mnt, pid, files))
        time.sleep(5)  # every mount's startup recording ends after 2 s of quiet (reads recorded cost more)
        print(f'{len(arms[0][4])} files; load {open("/proc/loadavg").read().strip()}')
        res = {fl: [] for fl in flags}
        for r in range(rounds):
            for k in range(len(arms)):
                fl, cache, mnt, pid, files = arms[(r + k) % len(arms)]
                rnd = random.Random(r)
                fds = [os.open(p, os.O_RDONLY) for p in files]
                for fd in fds:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                sizes = [os.fstat(fd).st_size for fd in fds]
                c0 = cpu(pid)
                for _ in range(preads):
                    j = rnd.randrange(len(fds))
                    os.pread(fds[j], 4096, rnd.randrange(0, sizes[j] - 4095) & ~4095)
                used = cpu(pid) - c0
                for fd in fds:
                    os.close(fd)
                res[fl].append(used / preads * 1e6)
                print(f'round {r + 1} [{fl}]: {used / preads * 1e6:.1f} µs/pread')
        for fl, xs in res.items():
            print(f'median [{fl}]: {statistics.median(xs):.1f} µs server CPU per pread ({min(xs):.1f}-{max(xs):.1f})')
        print(f'load {open("/proc/loadavg").read().strip()}')
    finally:
        for fl, cache, mnt, pid, files in arms:
            subprocess.run(['node', cli, 'unmount', mnt, '--cache-dir', cache], stdout=subprocess.DEVNULL)
        time.sleep(7)
        shutil.rmtree(w, ignore_errors=True)


main()
