#!/bin/bash
# The 32-reader growth of the node server under variants of its setup (run by hand, as root, after
# `npm run build`), a fresh server each run, variants rotating within each round:
#   ROUNDS="1 2" VARIANTS="default threads2 arena1 pool1" bench/server/thread-variants.sh
#   OTHER_CLI=/path/to/dist/cli/main.js VARIANTS="default other" ...   (`other`: another build)
# Each run is bench/server/memory-probe.ts (MOUNTS=20 RANDOM_S=30 READERS=32; its image and warm
# cache kept in .tmp/probe): one line per run with the server's RSS idle with 20 images, its peak
# under the readers, the growth, the reads and the most OS threads. Full outputs in .tmp/variants/.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=$ROOT/.tmp/variants
mkdir -p "$OUT"
run() { # name env...
  local name=$1; shift
  # the previous run's server ends 5 s after its last mount
  for _ in $(seq 30); do pgrep -f "$ROOT/.tmp/probe/cache" >/dev/null || break; sleep 1; done
  local f=$OUT/$name-$ROUND.txt
  echo -n "$name round $ROUND $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg): "
  env "$@" MOUNTS=20 RANDOM_S=30 READERS=32 node --import tsx bench/server/memory-probe.ts 2>/dev/null >"$f"
  awk '/^idle/{i=$3} /^t=/{ if ($3>p) p=$3; if ($NF>th) th=$NF }
    /"reads"/{match($0,/"reads": [0-9]+/); r=substr($0,RSTART+9,RLENGTH-9)}
    END{printf "idle %.1f MB, peak %.1f (+%.1f), reads %s, threads %s\n", i, p, p-i, r, th}' "$f"
}
for ROUND in ${ROUNDS:-1 2}; do
  for v in ${VARIANTS:-default threads2}; do
    case $v in
      default) run default X=1 ;;
      threads2) run threads2 CLIP_FUSE_MAX_THREADS=2 ;;
      arena1) run arena1 MALLOC_ARENA_MAX=1 ;;
      other) run other "CLIP_CLI=${OTHER_CLI:?set OTHER_CLI to the dist/cli/main.js of the other build}" ;;
      pool1) run pool1 "CLIP_SERVER_V8_FLAGS=--max-semi-space-size=1 --expose-gc --v8-pool-size=1" ;;
      *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
  done
done
