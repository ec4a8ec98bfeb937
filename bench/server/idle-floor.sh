#!/bin/bash
# The floor under the idle server (run by hand, as root, after `npm run build`):
#   ROUNDS=3 bench/server/idle-floor.sh [CLI]      (CLI: dist/cli/main.js of this tree, or another build's)
# Alternating, ROUNDS times: (A) a bare `node` that only waits, with the V8 flags the holder gives
# the server (CLIP_SERVER_V8_FLAGS or its default, plus the heap growing factor the server sets),
# and (B) the server with one background mount of debian-python in a fresh cache, its reader thread
# asleep (CLIP_FUSE_SLEEP_MS=5000). Both measured 20 s after start: RSS, anon, file, OS threads.
# Ends with the medians of each and B - A, and the load average.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLI=${1:-$ROOT/dist/cli/main.js}
LAYOUT=$ROOT/.tmp/bench-images/debian-python/layout
FLAGS=${CLIP_SERVER_V8_FLAGS:---max-semi-space-size=1 --expose-gc}
W=$(mktemp -d "$ROOT/.tmp/idle-floor-XXXX")
mkdir "$W/mnt"
bare=
cleanup() {
  [ -n "$bare" ] && kill "$bare" 2>/dev/null || true
  node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%.1f ", $2 / 1024 }' "/proc/$1/status"; ls "/proc/$1/task" | wc -l; }
echo "load $(cut -d' ' -f1-3 /proc/loadavg)   (MB: rss anon file, threads)"
for r in $(seq "${ROUNDS:-3}"); do
  # shellcheck disable=SC2086 # FLAGS is a list of flags
  node $FLAGS --heap-growing-percent=25 -e 'setInterval(() => undefined, 1 << 30)' &
  bare=$!
  sleep 20; echo "bare   $r $(rss "$bare")" | tee -a "$W/figures"
  kill "$bare"; wait "$bare" 2>/dev/null || true; bare=

  rm -rf "$W/cache"
  CLIP_FUSE_SLEEP_MS=5000 node "$CLI" mount "oci:$LAYOUT:latest" "$W/mnt" --background --cache-dir "$W/cache" >/dev/null
  pid=$(head -1 "$(ls "$W"/cache/mounts/*.pid | head -1)")
  sleep 20; echo "server $r $(rss "$pid")" | tee -a "$W/figures"
  node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
done
awk '{ n[$1]++; for (i = 3; i <= 5; i++) v[$1, i, n[$1]] = $i }
  function med(arm, i,   k, j, t, a) { for (k = 1; k <= n[arm]; k++) a[k] = v[arm, i, k]
    for (k = 1; k <= n[arm]; k++) for (j = k + 1; j <= n[arm]; j++) if (a[j] < a[k]) { t = a[k]; a[k] = a[j]; a[j] = t }
    return a[int((n[arm] + 1) / 2)] }
  END { for (i = 3; i <= 5; i++) { b[i] = med("bare", i); s[i] = med("server", i) }
    printf "median bare   rss %.1f anon %.1f file %.1f\n", b[3], b[4], b[5]
    printf "median server rss %.1f anon %.1f file %.1f\n", s[3], s[4], s[5]
    printf "server - bare rss %+.1f anon %+.1f file %+.1f\n", s[3] - b[3], s[4] - b[4], s[5] - b[5] }' "$W/figures"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
