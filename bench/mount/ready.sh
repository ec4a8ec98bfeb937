#!/bin/bash
# Time from `clip mount --background INDEX MNT` starting to it returning (the mount is ready), and
# the daemon's CPU seconds (user+system, /proc/PID/stat) at that point; then `clip unmount` (not timed).
# Usage (as root, after `npm run build`; index from `node dist/cli/main.js demo`):
#   bench/mount/ready.sh INDEXFILE [RUNS] [DIST...]     # DIST: build dirs to compare, default dist
set -euo pipefail
index=$1; runs=${2:-10}; shift $(( $# >= 2 ? 2 : 1 )); dists=("${@:-dist}")
mnt=$(mktemp -d); cache=$(mktemp -d)
trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt"; rm -rf "$cache"' EXIT
tick=$(getconf CLK_TCK)
for d in "${dists[@]}"; do node "$d/cli/main.js" --version >/dev/null; done # warm the page cache
for i in $(seq "$runs"); do
  for d in "${dists[@]}"; do
    s=$(date +%s%N)
    node "$d/cli/main.js" mount "$index" "$mnt" --background --cache-dir "$cache" 2>"$cache/err" >/dev/null
    e=$(date +%s%N)
    pid=$(grep -o 'pid [0-9]*' "$cache/err" | head -1 | cut -d' ' -f2)
    cpu=$(awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat")
    printf '%s run %d: ready %.3f s, daemon CPU %s s\n' "$d" "$i" "$(echo "($e - $s) / 1000000000" | bc -l)" "$cpu"
    node "$d/cli/main.js" unmount "$mnt" --cache-dir "$cache" >/dev/null
  done
done
