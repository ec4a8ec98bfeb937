#!/bin/bash
# What the server loads, as it costs (run by hand, as root, after `npm run build`):
#   ROUNDS=5 bench/server/load-cost.sh CLI...   (each a build's dist/cli/main.js; arms alternate)
# Each round, for each CLI in turn: one background mount of debian-python in a fresh cache that has
# only the image's index (copied, so that no indexing runs), its reader thread let sleep
# (CLIP_FUSE_SLEEP_MS=5000). Measured: the server's CPU (user+sys, ms) when `clip mount` returns
# (the mount ready), its RSS (anon, file) 20 s later, idle; then a first READ (`cat` of one small
# file: the fetch from the layout, inflate, verify, cache), the CPU it took, and the RSS AFTER_S (40) s after
# it, idle again. Ends with the medians of each arm (min-max) and the load average.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -gt 0 ] || set -- "$ROOT/dist/cli/main.js"
LAYOUT=$ROOT/.tmp/bench-images/debian-python/layout
FILE=${FILE:-usr/lib/python3.11/json/__init__.py}
W=$(mktemp -d "$ROOT/.tmp/load-cost-XXXX")
mkdir "$W/mnt"
cli=$1
cleanup() { node "$cli" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
# The index, made once by the first CLI (its format is every build's).
node "$1" index "oci:$LAYOUT:latest" --cache-dir "$W/seed" >/dev/null 2>&1
HZ=$(getconf CLK_TCK)
cpu_ms() { awk -v hz="$HZ" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
mem() { awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%.1f ", $2 / 1024 }' "/proc/$1/status"; }
for i in $(seq $#); do echo "arm$i: ${!i}"; done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)   (cpu ms at ready; MB rss anon file idle; cpu ms of the READ; MB rss anon file after it)"
for r in $(seq "${ROUNDS:-3}"); do
  for i in $(seq $#); do
    cli=${!i}
    rm -rf "$W/cache"; mkdir -p "$W/cache"; cp -r "$W/seed/indexes" "$W/cache/"
    CLIP_FUSE_SLEEP_MS=5000 node "$cli" mount "oci:$LAYOUT:latest" "$W/mnt" --background --cache-dir "$W/cache" >/dev/null 2>&1
    pid=$(head -1 "$(ls "$W"/cache/mounts/*.pid | head -1)")
    ready=$(cpu_ms "$pid")
    sleep 20; idle=$(mem "$pid")
    before=$(cpu_ms "$pid"); cat "$W/mnt/$FILE" >/dev/null; read=$(($(cpu_ms "$pid") - before))
    sleep "${AFTER_S:-40}"; after=$(mem "$pid")
    echo "arm$i $r $ready $idle $read $after" | tee -a "$W/figures"
    node "$cli" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  done
done
awk '{ if (!($1 in n)) arms[++k] = $1; n[$1]++; for (i = 3; i <= 10; i++) v[$1, i, n[$1]] = $i }
  function sorted(arm, i, a,   m, j, t) { for (m = 1; m <= n[arm]; m++) a[m] = v[arm, i, m]
    for (m = 1; m <= n[arm]; m++) for (j = m + 1; j <= n[arm]; j++) if (a[j] < a[m]) { t = a[m]; a[m] = a[j]; a[j] = t } }
  function fig(arm, i,   a) { sorted(arm, i, a); return sprintf("%s (%s-%s)", a[int((n[arm] + 1) / 2)], a[1], a[n[arm]]) }
  END { for (a = 1; a <= k; a++) { arm = arms[a]
      printf "median %s: cpu at ready %s ms; idle rss %s anon %s file %s; READ cpu %s ms; after it rss %s anon %s file %s\n", arm,
        fig(arm, 3), fig(arm, 4), fig(arm, 5), fig(arm, 6), fig(arm, 7), fig(arm, 8), fig(arm, 9), fig(arm, 10) } }' "$W/figures"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
