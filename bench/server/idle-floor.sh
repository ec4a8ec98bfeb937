#!/bin/bash
# The floor under the idle server (run by hand, as root, after `npm run build`):
#   ROUNDS=3 bench/server/idle-floor.sh [CLI...]   (default dist/cli/main.js of this tree; more
#                                                   builds' CLIs to compare them in the same run)
# Alternating, ROUNDS times: a bare `node` that only waits, with the V8 flags the holder gives the
# server (CLIP_SERVER_V8_FLAGS or its default, plus the heap growing factor the server sets), then
# for each CLI the server with one background mount of debian-python in a fresh cache, its reader
# thread asleep (CLIP_FUSE_SLEEP_MS=5000). Each measured 20 s after start: RSS, anon, file (MB),
# OS threads, PSS (pages shared with the holder and other node processes counted in part). Ends
# with the medians of each arm, each server's less the bare node's, and the load average.
# An arm CLI+FLAG,FLAG... runs that build's server with these V8 flags added to the server's
# (CLIP_SERVER_V8_FLAGS), e.g. `dist/cli/main.js dist/cli/main.js+--single-threaded-gc`.
# Three bare arms: `bare`, a node started alone; `forked`, one forked with an IPC channel from a
# waiting parent, as the holder forks the server (the channel loads child_process, net, streams);
# `runtime`, forked the same way, loading what the first server was seen to load besides clip's
# own code (node builtins, koffi, pako: listed once before the rounds by loaded-modules.mjs in an
# idle server with one mount), then collected and trimmed: the floor of a Node server with clip's
# dependencies, before any of clip's code, index or state.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -gt 0 ] || set -- "$ROOT/dist/cli/main.js"
CLI=${1%%+*}
LAYOUT=$ROOT/.tmp/bench-images/debian-python/layout
FLAGS=${CLIP_SERVER_V8_FLAGS:---max-semi-space-size=1 --expose-gc}
W=$(mktemp -d "$ROOT/.tmp/idle-floor-XXXX")
mkdir "$W/mnt"
bare= parent=
echo 'setInterval(() => undefined, 1 << 30);' >"$W/wait.cjs"
cleanup() {
  [ -n "$bare" ] && kill "$bare" 2>/dev/null || true
  [ -n "$parent" ] && kill "$parent" "$(cat "$W/wait.cjs.pid" 2>/dev/null)" "$(cat "$W/modules.json.pid" 2>/dev/null)" 2>/dev/null || true
  node "$CLI" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
rss() {
  awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%.1f ", $2 / 1024 }' "/proc/$1/status"
  echo "$(ls "/proc/$1/task" | wc -l) $(awk '/^Pss:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/smaps_rollup")"
}
for i in $(seq $#); do echo "server$i: ${!i}"; done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)   (MB: rss anon file, threads, pss)"
# The image mounted in a fresh cache by CLI, its server given V8 flags FLAGS (more variables can be
# set before the call); prints the server's pid.
mount_server() { # CLI FLAGS
  rm -rf "$W/cache"
  CLIP_SERVER_V8_FLAGS="$2" CLIP_FUSE_SLEEP_MS=5000 node "$1" mount "oci:$LAYOUT:latest" "$W/mnt" --background --cache-dir "$W/cache" >/dev/null 2>&1
  head -1 "$(ls "$W"/cache/mounts/*.pid | head -1)"
}
unmount_server() { # CLI PID
  node "$1" unmount "$W/mnt" --cache-dir "$W/cache" >/dev/null
  for _ in $(seq 30); do kill -0 "$2" 2>/dev/null || break; sleep 1; done
}
# SCRIPT [ARG] forked from a waiting parent (`parent`) with the server's flags, as the holder forks
# the server; the child's pid in PIDFILE.
fork_node() { # PIDFILE SCRIPT [ARG]
  # shellcheck disable=SC2086 # FLAGS is a list of flags
  node -e 'const [pidFile, script, arg] = process.argv.slice(1, 4); const c = require("node:child_process").fork(script, arg ? [arg] : [], { execArgv: process.argv.slice(4) }); require("node:fs").writeFileSync(pidFile, String(c.pid))' "$1" "$2" "${3:-}" $FLAGS --heap-growing-percent=25 &
  parent=$!
}
end_fork() { # PIDFILE
  kill "$(cat "$1")" "$parent"; wait "$parent" 2>/dev/null || true; parent=
}
# The listing server: mounted as the measured ones, idle as long, then asked for its list.
pid=$(CLIP_BENCH_MODULES=$W/modules.json mount_server "$CLI" "$FLAGS --import $ROOT/bench/server/loaded-modules.mjs")
sleep 20; kill -USR2 "$pid"
for _ in $(seq 20); do [ -s "$W/modules.json" ] && break; sleep 0.5; done
unmount_server "$CLI" "$pid"
node -e 'const l = require(process.argv[1]); console.log(`runtime arm loads ${l.builtins.length} builtins, ${l.cjs.length + l.esm.length} package files: ${[...new Set([...l.cjs, ...l.esm].map((f) => f.replace(/.*node_modules\//, "").split("/")[0]))].join(" ")}`)' "$W/modules.json"
for r in $(seq "${ROUNDS:-3}"); do
  # shellcheck disable=SC2086 # FLAGS is a list of flags
  node $FLAGS --heap-growing-percent=25 -e 'setInterval(() => undefined, 1 << 30)' &
  bare=$!
  sleep 20; echo "bare   $r $(rss "$bare")" | tee -a "$W/figures"
  kill "$bare"; wait "$bare" 2>/dev/null || true; bare=
  fork_node "$W/wait.cjs.pid" "$W/wait.cjs"
  sleep 20; echo "forked $r $(rss "$(cat "$W/wait.cjs.pid")")" | tee -a "$W/figures"
  end_fork "$W/wait.cjs.pid"
  fork_node "$W/modules.json.pid" "$ROOT/bench/server/runtime-floor.mjs" "$W/modules.json"
  sleep 20; echo "runtime $r $(rss "$(cat "$W/modules.json.pid")")" | tee -a "$W/figures"
  end_fork "$W/modules.json.pid"

  for i in $(seq $#); do
    cli=${!i%%+*} extra=
    [ "$cli" = "${!i}" ] || extra=" ${!i#*+}"
    pid=$(mount_server "$cli" "$FLAGS${extra//,/ }")
    sleep 20; echo "server$i $r $(rss "$pid")" | tee -a "$W/figures"
    unmount_server "$cli" "$pid"
  done
done
awk '{ if (!($1 in n)) arms[++k] = $1; n[$1]++; for (i = 3; i <= 7; i++) v[$1, i, n[$1]] = $i }
  function med(arm, i,   m, j, t, a) { for (m = 1; m <= n[arm]; m++) a[m] = v[arm, i, m]
    for (m = 1; m <= n[arm]; m++) for (j = m + 1; j <= n[arm]; j++) if (a[j] < a[m]) { t = a[m]; a[m] = a[j]; a[j] = t }
    return a[int((n[arm] + 1) / 2)] }
  END { for (a = 1; a <= k; a++) { arm = arms[a]
      printf "median %-8s rss %.1f anon %.1f file %.1f pss %.1f", arm, med(arm, 3), med(arm, 4), med(arm, 5), med(arm, 7)
      if (arm != "bare") printf "   over bare: rss %+.1f anon %+.1f file %+.1f", med(arm, 3) - med("bare", 3), med(arm, 4) - med("bare", 4), med(arm, 5) - med("bare", 5)
      if (arm ~ /^server/ && ("runtime" in n)) printf "   over runtime: rss %+.1f anon %+.1f file %+.1f", med(arm, 3) - med("runtime", 3), med(arm, 4) - med("runtime", 4), med(arm, 5) - med("runtime", 5)
      printf "\n" } }' "$W/figures"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
