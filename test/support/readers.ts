/**
 * `python3 -c READERS_PY MNT ORACLE SECONDS READERS`: readers pick a file (the big one most often), an
 * offset and a length, and compare with the oracle; prints {reads, bytes, mismatches, errors, slowest}.
 */
export const READERS_PY = String.raw`
import json, os, random, sys, threading, time
mnt, oracle, seconds, readers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
files = []
for d, _, names in os.walk(oracle):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append((os.path.relpath(p, oracle), os.path.getsize(p)))
big = max(files, key=lambda f: f[1])
stats = {'reads': 0, 'bytes': 0, 'mismatches': [], 'errors': [], 'slowest': 0.0}
lock = threading.Lock()
deadline = time.monotonic() + seconds
def reader(seed):
    rnd = random.Random(seed)
    m_fds, o_fds = {}, {}
    reads = nbytes = 0
    slowest = 0.0
    while time.monotonic() < deadline:
        rel, size = big if rnd.random() < 0.8 else rnd.choice(files)
        if size == 0:
            continue
        off = rnd.randrange(size)
        length = rnd.choice((1, 4096, 65536, 131072, 1048576, rnd.randrange(1, 300000)))
        if rel not in m_fds:
            m_fds[rel] = os.open(os.path.join(mnt, rel), os.O_RDONLY)
            o_fds[rel] = os.open(os.path.join(oracle, rel), os.O_RDONLY)
        t = time.monotonic()
        try:
            got = os.pread(m_fds[rel], length, off)
        except OSError as e:
            with lock: stats['errors'].append('%s@%d: %s' % (rel, off, e))
            continue
        slowest = max(slowest, time.monotonic() - t)
        want = os.pread(o_fds[rel], length, off)
        if got != want:
            with lock: stats['mismatches'].append('%s@%d+%d: got %d bytes' % (rel, off, length, len(got)))
        reads += 1
        nbytes += len(got)
        if rnd.random() < 0.05:
            # Drop the file's page cache now and then, so reads keep reaching the server, not only the kernel.
            os.posix_fadvise(m_fds[rel], 0, 0, os.POSIX_FADV_DONTNEED)
    for fd in list(m_fds.values()) + list(o_fds.values()):
        os.close(fd)
    with lock:
        stats['reads'] += reads; stats['bytes'] += nbytes; stats['slowest'] = max(stats['slowest'], slowest)
threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
for t in threads: t.start()
for t in threads: t.join()
stats['mismatches'] = stats['mismatches'][:10]; stats['errors'] = stats['errors'][:10]
print(json.dumps(stats))
`;
