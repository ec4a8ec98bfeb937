#!/usr/bin/env python3
"""Where one reader's cold 4 KiB preads wait, per FUSE server (issue 15's pread row, by hand).

    python3 bench/mount/pread-waits.py ROUNDS NAME=MOUNTPOINT:SERVER_PID ...   (as root; N=4000 preads)

The arms are mounted beforehand (each its own server). Each round drops the page cache and runs
fuse-peers.ts's probe (one reader, N preads of 4 KiB at random offsets of the largest files,
.tmp/peers/paths-largest.txt), arms interleaved in a rotating order, and notes for the server:
CPU (ms), run-queue wait of its threads (schedstat, ms: time runnable but not running), bytes it
had read from the disk (/proc/PID/io), block I/O requests it queued (perf stat
block:block_bio_queue), and its threads' context switches. Prints medians; the load at the end.
Wall-time rates swing with the load; the server-side figures bend less.
"""
import glob, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, '../../.tmp/peers/paths-largest.txt')
N = os.environ.get('N', '4000')
PROBE = open(os.path.join(HERE, 'fuse-peers.ts')).read().split('const PREAD_PROBE = `', 1)[1].split('`;', 1)[0].replace('\\\\n', '\\n')


def threads(pid, name):
    for f in glob.glob(f'/proc/{pid}/task/*/{name}'):
        try:
            yield open(f).read()
        except FileNotFoundError:
            pass


def snapshot(pid):
    run = wait = vcs = nvcs = 0
    for s in threads(pid, 'schedstat'):
        a = s.split(); run += int(a[0]); wait += int(a[1])
    for s in threads(pid, 'status'):
        for line in s.splitlines():
            if line.startswith('voluntary_ctxt_switches'): vcs += int(line.split()[1])
            elif line.startswith('nonvoluntary_ctxt_switches'): nvcs += int(line.split()[1])
    io = dict(line.split(': ') for line in open(f'/proc/{pid}/io').read().splitlines())
    return {'cpu_ms': run / 1e6, 'rqwait_ms': wait / 1e6, 'disk_mb': int(io['read_bytes']) / 1e6, 'vcs': vcs, 'nvcs': nvcs}


def main():
    rounds = int(sys.argv[1])
    arms = []
    for a in sys.argv[2:]:
        name, rest = a.split('=', 1); mnt, pid = rest.rsplit(':', 1); arms.append((name, mnt, pid))
    res = {name: [] for name, _, _ in arms}
    for r in range(rounds):
        for i in range(len(arms)):
            name, mnt, pid = arms[(i + r) % len(arms)]
            subprocess.run(['sync']); open('/proc/sys/vm/drop_caches', 'w').write('3')
            out = f'/tmp/pread-waits-{os.getpid()}.perf'
            perf = subprocess.Popen(['perf', 'stat', '-x,', '-e', 'block:block_bio_queue', '-p', pid, '-o', out])
            time.sleep(0.3)
            before = snapshot(pid)
            rate = float(subprocess.run(['python3', '-c', PROBE, mnt, LIST, '1', N], capture_output=True, text=True, check=True).stdout)
            after = snapshot(pid)
            perf.send_signal(2); perf.wait()
            row = {'preads/s': rate, **{k: after[k] - before[k] for k in after}}
            row['bios'] = int(open(out).read().strip().splitlines()[-1].split(',')[0]); os.unlink(out)
            res[name].append(row)
            print(r + 1, name, ' '.join(f'{k} {v:.0f}' for k, v in row.items()), flush=True)
    print('load', open('/proc/loadavg').read().strip())
    for name, rows in res.items():
        print(name, ' '.join(f'{k} {statistics.median(x[k] for x in rows):.0f} ({min(x[k] for x in rows):.0f}-{max(x[k] for x in rows):.0f})' for k in rows[0]))


main()
