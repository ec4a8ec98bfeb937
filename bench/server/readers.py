"""Load on clip mounts for bench/server/memory.ts (run by it; prints one JSON line).

  readers.py random  SECONDS THREADS FILELIST   random preads (4 KiB to 128 KiB) over the files
                                               listed, the page cache of a file dropped before
                                               each read so that every read reaches the server
  readers.py latency COUNT FILELIST             one request at a time: getxattr of a missing
                                               attribute (a round trip to the server, never
                                               cached) and a 4 KiB pread after the page cache
                                               of the file was dropped; latencies in µs
"""
import json
import os
import random
import sys
import threading
import time


def files_of(listing):
    with open(listing) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def random_readers(seconds, threads, files):
    served = [0] * threads
    reads = [0] * threads
    errors = [0] * threads
    stop = time.monotonic() + seconds

    def run(k):
        rnd = random.Random(k)
        while time.monotonic() < stop:
            path, size = rnd.choice(files)
            size = int(size)
            n = rnd.choice((4096, 16384, 65536, 131072))
            off = rnd.randrange(0, max(1, size - n))
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    served[k] += len(os.pread(fd, n, off))
                    reads[k] += 1
                finally:
                    os.close(fd)
            except OSError:
                errors[k] += 1

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"bytes": sum(served), "reads": sum(reads), "errors": sum(errors), "seconds": time.monotonic() - t0}


def latency(count, files):
    rnd = random.Random(1)
    xattr, pread = [], []
    for _ in range(count):
        path, size = rnd.choice(files)
        t0 = time.perf_counter_ns()
        try:
            os.getxattr(path, "user.clip-bench-missing")
        except OSError:
            pass
        xattr.append((time.perf_counter_ns() - t0) / 1000)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            off = rnd.randrange(0, max(1, int(size) - 4096)) & ~4095
            t0 = time.perf_counter_ns()
            os.pread(fd, 4096, off)
            pread.append((time.perf_counter_ns() - t0) / 1000)
        finally:
            os.close(fd)

    def q(xs, p):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 1)

    return {k: {"p50": q(v, 0.5), "p90": q(v, 0.9), "p99": q(v, 0.99), "n": len(v)} for k, v in (("getxattr", xattr), ("pread4k", pread))}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "random":
        print(json.dumps(random_readers(float(sys.argv[2]), int(sys.argv[3]), files_of(sys.argv[4]))))
    elif mode == "latency":
        print(json.dumps(latency(int(sys.argv[2]), files_of(sys.argv[3]))))
    else:
        sys.exit("usage: readers.py random SECONDS THREADS FILELIST | latency COUNT FILELIST")
