#!/bin/bash
# The idle server with its reader thread and without it (run by hand, as root, after `npm run build`
# and bench/server/memory.ts, which builds the image):
#   bench/server/idle-sleep.sh [CLI]      (CLI: dist/cli/main.js of this tree, or another build's)
# One background mount of debian-python in a fresh cache, CLIP_FUSE_SLEEP_MS=5000 (the last reader
# thread ends after 5 s without a request instead of 120 s): the server's RSS (anon, file) and
# thread count 3 s after mounting (thread alive) and 15 s after (asleep; the idle collection done);
# then 3 times: the first getxattr after sleeping (a thread is started for it), the next two, and
# the RSS 8 s later.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLI=${1:-$ROOT/dist/cli/main.js}
LAYOUT=$ROOT/.tmp/bench-images/debian-python/layout
W=$(mktemp -d "$ROOT/.tmp/idle-sleep-XXXX")
mkdir "$W/mnt"
trap 'node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
CLIP_FUSE_SLEEP_MS=5000 node "$CLI" mount "oci:$LAYOUT:latest" "$W/mnt" --background --cache-dir "$W/cache" >/dev/null
pid=$(head -1 "$(ls "$W"/cache/mounts/*.pid | head -1)")
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %.1f MB  ", $1, $2 / 1024 }' "/proc/$pid/status"; echo "threads $(ls "/proc/$pid/task" | wc -l)"; }
sleep 3; echo "3 s after mounting:  $(rss)"
sleep 12; echo "15 s after mounting: $(rss)"
for _ in 1 2 3; do
  python3 - "$W/mnt/usr/bin/python3.11" <<'PY'
import os, sys, time
def getxattr_ms():
    t0 = time.perf_counter()
    try:
        os.getxattr(sys.argv[1], "user.clip-bench-missing")
    except OSError:
        pass
    return (time.perf_counter() - t0) * 1000
a, b, c = getxattr_ms(), getxattr_ms(), getxattr_ms()
print(f"getxattr after sleeping {a:.1f} ms; the next two {b:.2f} / {c:.2f} ms")
PY
  sleep 8; echo "8 s later: $(rss)"
done
if grep -q '"signal"' "$W/cache/server/server.log"; then echo "the server died:"; grep '"signal"' "$W/cache/server/server.log"; exit 1; fi
