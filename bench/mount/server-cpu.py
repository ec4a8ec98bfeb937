#!/usr/bin/env python3
"""The FUSE servers' CPU per workload, split by thread, interleaved (issue 15). Wall time swings 2x
on a shared machine; the server's CPU for the same requests much less. Run as root, with servers
already mounted (each arm NAME=PID:MOUNTPOINT; clip's PID is its server's, `clip mounts --json`):
  bench/mount/server-cpu.py ROUNDS xattr,lstat,pread1,lsR go=PID:MNT base=PID:MNT new=PID:MNT
Each round runs every workload on every arm, in an order that rotates from round to round, under
`perf stat --per-thread -e task-clock -p PID`. A clip server's threads are told apart by what they
wait in before the run: its reader threads in epoll_wait (or born during the run), the main thread,
and the rest (V8's GC helpers, libuv's pool). The probes are fuse-peers.ts's own, read from it, and
the path lists the ones it wrote to .tmp/peers (run it once first). Prints medians (min-max) in ms.
"""
import os, re, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, '../../.tmp/peers')
SYS_EPOLL_WAIT = '232'  # x86_64


def probe(name: str) -> str:
    """A python probe of fuse-peers.ts (a template literal there: its escapes undone)."""
    text = open(os.path.join(HERE, 'fuse-peers.ts')).read()
    return re.search(rf'const {name} = `(.*?)`;', text, re.S).group(1).replace('\\\\', '\\')


def drop(level: int) -> None:
    subprocess.run(['sync'], check=True)
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write(str(level))


def command(w: str, mnt: str) -> list[str]:
    if w == 'xattr':
        return ['python3', '-c', probe('XATTR_PROBE'), os.path.join(mnt, 'usr/bin/python3.11'), '20000']
    if w == 'lstat':
        drop(2)
        return ['python3', '-c', probe('LSTAT_PROBE'), mnt, os.path.join(PEERS, 'paths-all.txt')]
    if w == 'pread1':
        drop(3)
        return ['python3', '-c', probe('PREAD_PROBE'), mnt, os.path.join(PEERS, 'paths-largest.txt'), '1', '4000']
    if w == 'lsR':
        drop(3)
        return ['sh', '-c', 'ls -lR "$1" > /dev/null', 'sh', mnt]
    sys.exit(f'server-cpu: unknown workload {w!r} (xattr, lstat, pread1, lsR)')


def kinds(pid: int) -> dict[str, str]:
    out = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            call = open(f'/proc/{pid}/task/{tid}/syscall').read().split()[0]
        except OSError:
            continue
        out[tid] = 'main' if int(tid) == pid else ('reader' if call == SYS_EPOLL_WAIT else 'other')
    return out


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, wls = int(sys.argv[1]), sys.argv[2].split(',')
    arms = []
    for a in sys.argv[3:]:
        name, rest = a.split('=', 1)
        pid, mnt = rest.split(':', 1)
        arms.append((name, int(pid), mnt))
    print('load before', ' '.join(open('/proc/loadavg').read().split()[:3]))
    res: dict[str, dict[str, list[dict[str, float]]]] = {}
    for r in range(rounds):
        order = arms[r % len(arms):] + arms[:r % len(arms)]
        for w in wls:
            for name, pid, mnt in order:
                cmd = command(w, mnt)
                k = kinds(pid)
                t = time.perf_counter()
                p = subprocess.run(['perf', 'stat', '--per-thread', '-x,', '-e', 'task-clock', '-p', str(pid), '--', *cmd],
                                   capture_output=True, text=True, check=True)
                by = {'wall': time.perf_counter() - t, 'reader': 0.0, 'main': 0.0, 'other': 0.0}
                for line in p.stderr.splitlines():
                    f = line.split(',')
                    if len(f) > 3 and f[3] == 'task-clock' and f[1] != '<not counted>':
                        by[k.get(f[0].rsplit('-', 1)[-1], 'reader')] += float(f[1])  # born in the run: an added reader
                by['total'] = by['reader'] + by['main'] + by['other']
                res.setdefault(w, {}).setdefault(name, []).append(by)
    print('load after', ' '.join(open('/proc/loadavg').read().split()[:3]))
    med = lambda xs: f'{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})'
    print('| workload | arm | server CPU ms | vs first arm | reader | main | other | wall s |')
    print('|---|---|---|---|---|---|---|---|')
    for w in wls:
        first = statistics.median(x['total'] for x in res[w][arms[0][0]])
        for name, _, _ in arms:
            xs = res[w][name]
            total = [x['total'] for x in xs]
            print(f"| {w} | {name} | {med(total)} | {statistics.median(total) / first:.2f}x | "
                  f"{med([x['reader'] for x in xs])} | {med([x['main'] for x in xs])} | {med([x['other'] for x in xs])} | "
                  f"{statistics.median(x['wall'] for x in xs):.2f} |")


if __name__ == '__main__':
    main()
