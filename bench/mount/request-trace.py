#!/usr/bin/env python3
"""What the kernel asked a FUSE server for during one command, by opcode: count, median and summed
time from send to end (the client's wait), from the kernel's fuse tracepoints. Run as root:
  bench/mount/request-trace.py MOUNTPOINT -- COMMAND ARGS...     # e.g. -- chroot MNT python3 -c 'import json'
Drops the page cache first (DROP=0 to keep it). Only MOUNTPOINT's connection is counted.
"""
import os, re, statistics, subprocess, sys, tempfile, time

def main() -> None:
    if '--' not in sys.argv or sys.argv.index('--') < 2:
        sys.exit(__doc__)
    cmd = sys.argv[sys.argv.index('--') + 1:]
    conn = os.minor(os.stat(sys.argv[1]).st_dev)  # the fusectl connection number
    if os.environ.get('DROP', '1') != '0':
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3')
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, 'perf.data')
        t = time.monotonic()
        subprocess.run(['perf', 'record', '-q', '-o', data, '-a', '-e', 'fuse:fuse_request_send', '-e', 'fuse:fuse_request_end', '--', *cmd],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - t
        out = subprocess.run(['perf', 'script', '-i', data, '-F', 'time,event,trace'], check=True, capture_output=True, text=True).stdout
    sent: dict[str, tuple[float, str]] = {}
    times: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    reads: list[int] = []
    for line in out.splitlines():
        m = re.match(r'\s*([\d.]+):\s+fuse:fuse_request_(send|end):\s+(.*)', line)
        if not m:
            continue
        t, kind, rest = float(m.group(1)), m.group(2), m.group(3)
        uniq = re.search(r'connection (\d+) req (\S+)', rest)
        if not uniq or int(uniq.group(1)) != conn:
            continue
        if kind == 'send':
            op = re.search(r'opcode \d+ \((\w+)\)', rest) or re.search(r'opcode (\S+)', rest)
            sent[uniq.group(2)] = (t, op.group(1) if op else '?')
        elif uniq.group(2) in sent:
            t0, op = sent.pop(uniq.group(2))
            if op == 'FUSE_READ':
                reads.append(int(re.search(r'len (\d+)', rest).group(1)) - 16)
            times.setdefault(op, []).append((t - t0) * 1e6)
            err = re.search(r'error (-?\d+)', rest)
            if err and err.group(1) != '0':
                errors[op] = errors.get(op, 0) + 1
    total = sum(len(v) for v in times.values())
    print(f'command {wall:.3f} s (under perf record); {total} requests, {sum(sum(v) for v in times.values()) / 1e3:.1f} ms summed from send to end')
    if reads:
        print(f'READ: {sum(reads) / 1e6:.1f} MB, mean {statistics.mean(reads) / 1e3:.0f} KB, largest {max(reads) / 1e3:.0f} KB')
    print(f'{"opcode":<14}{"count":>7}{"errors":>8}{"median µs":>11}{"sum ms":>9}')
    for op, v in sorted(times.items(), key=lambda kv: -len(kv[1])):
        print(f'{op:<14}{len(v):>7}{errors.get(op, 0):>8}{statistics.median(v):>11.0f}{sum(v) / 1e3:>9.1f}')

main()
