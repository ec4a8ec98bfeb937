#!/bin/bash
# What a mount holds when it finds a startup profile (run by hand, as root, after `npm run build`):
#   bench/server/profile-memory.sh [CLI]
# One image mounted twice in a fresh cache: first cold (python3 imports a few modules from it, the
# mount records a profile), then again once unmounted (the profile is found and handed over).
# Prints the server's memory line of `clip server status` 20 s after each run, what `clip mounts`
# counts for the mount (index, learned checkpoints' windows), and the profile's size.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLI=${1:-$ROOT/dist/cli/main.js}
LAYOUT=$ROOT/.tmp/bench-images/debian-python/layout
W=$(mktemp -d "$ROOT/.tmp/profile-memory-XXXX")
mkdir "$W/mnt"
trap 'node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
for pass in cold warm; do
  CLIP_FUSE_SLEEP_MS=5000 node "$CLI" mount "oci:$LAYOUT:latest" "$W/mnt" --background --cache-dir "$W/cache" >/dev/null 2>&1
  chroot "$W/mnt" /usr/bin/python3 -c 'import json, email, http.client'
  sleep 20
  echo "$pass, 20 s after python: $(node "$CLI" server status --cache-dir "$W/cache" | sed -n 2p)"
  node "$CLI" mounts --cache-dir "$W/cache" --json | node -e 'const [m] = JSON.parse(require("fs").readFileSync(0, "utf8")); const mb = (b) => (b / 2 ** 20).toFixed(2); console.log(`  mount: index ${mb(m.memory.indexBytes)} MiB, learned windows ${mb(m.memory.learnedWindowBytes ?? 0)} MiB`)'
  for p in "$W"/cache/profiles/*.profile; do echo "  profile $(stat -c %s "$p") bytes"; done
  node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null
  sleep 7
done
