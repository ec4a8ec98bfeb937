"""Cold sequential reads of the same files through mounts already up, interleaved, with what each
costs the disk and how long the serving process's threads waited on it (session 12, issue 15):
for every round and arm, drop the page cache, read the files in order 128 KiB at a time (as
fuse-peers.ts's seqCold row), and report MB/s, the device's reads and MB (/proc/diskstats: the
whole device, others' reads too), the server's threads' block-I/O wait (delay accounting:
/proc/PID/task/*/stat field 42) and CPU. Wait and CPU are less bent by a busy machine than MB/s.
Run as root with delay accounting on (sysctl kernel.task_delayacct=1), after mounting the arms:
  python3 bench/mount/seq-io.py LIST ROUNDS NAME=MOUNTPOINT:SERVER_PID ...
LIST: paths relative to each mountpoint, one a line (fuse-peers.ts writes .tmp/peers/paths-largest.txt).
"""
import os, statistics as st, subprocess, sys, time

listfile, rounds = sys.argv[1], int(sys.argv[2])
arms = [(a.split('=', 1)[0], a.split('=', 1)[1].rsplit(':', 1)[0], int(a.rsplit(':', 1)[1])) for a in sys.argv[3:]]
if open('/proc/sys/kernel/task_delayacct').read().strip() != '1':
    sys.exit('seq-io: delay accounting is off: sysctl kernel.task_delayacct=1 (and back to 0 after)')
dev = os.stat(listfile).st_dev  # the list lives beside the backing files (.tmp/peers)
disk = next(l.split()[2] for l in open('/proc/diskstats') if (int(l.split()[0]), int(l.split()[1])) == (os.major(dev), os.minor(dev)))
TICK_MS = 1000 / os.sysconf('SC_CLK_TCK')


def disk_reads():
    f = next(l.split() for l in open('/proc/diskstats') if l.split()[2] == disk)
    return int(f[3]), int(f[5]) * 512 / 1e6


def threads(pid):
    """Per thread: block-I/O wait and CPU, in clock ticks."""
    out = {}
    for t in os.listdir(f'/proc/{pid}/task'):
        try:
            f = open(f'/proc/{pid}/task/{t}/stat').read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        out[t] = (int(f[39]), int(f[11]) + int(f[12]))
    return out


def delta(a, b):
    d = [0, 0]
    for t, v in b.items():
        for i in (0, 1):
            x = v[i] - a.get(t, (0, 0))[i]
            # A thread's first wait after delay accounting was switched on counts from boot: dropped.
            if x < 10_000:
                d[i] += x
    return d[0] * TICK_MS, d[1] * TICK_MS


rows = {name: [] for name, _, _ in arms}
for r in range(rounds):
    for name, root, pid in arms[r % len(arms):] + arms[:r % len(arms)]:
        files = [os.path.join(root, l.rstrip('\n')) for l in open(listfile) if l.strip()]
        subprocess.run(['sync'], check=True)
        open('/proc/sys/vm/drop_caches', 'w').write('3')
        buf, n = bytearray(131072), 0
        d0, t0, start = disk_reads(), threads(pid), time.perf_counter()
        for p in files:
            with open(p, 'rb', buffering=0) as f:
                while k := f.readinto(buf):
                    n += k
        secs = time.perf_counter() - start
        d1 = disk_reads()
        wait, cpu = delta(t0, threads(pid))
        row = (n / 1e6 / secs, d1[0] - d0[0], d1[1] - d0[1], wait, cpu)
        rows[name].append(row)
        print(f'round {r + 1} {name:12s} {row[0]:6.0f} MB/s  {disk}: {row[1]:5d} reads {row[2]:6.1f} MB  server: I/O wait {row[3]:5.0f} ms, CPU {row[4]:4.0f} ms', flush=True)
print(os.popen('uptime').read().strip())
print('\n| arm | MB/s | disk reads | disk MB | server I/O wait (ms) | server CPU (ms) |\n|---|---|---|---|---|---|')
for name, rs in rows.items():
    cols = list(zip(*rs))
    cell = lambda xs, f: f'{f(st.median(xs))} ({f(min(xs))}–{f(max(xs))})'
    i = lambda x: f'{x:.0f}'
    print(f'| {name} | {cell(cols[0], i)} | {cell(cols[1], i)} | {cell(cols[2], i)} | {cell(cols[3], i)} | {cell(cols[4], i)} |')
