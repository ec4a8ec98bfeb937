#!/bin/bash
# What the server's modules cost a fresh node, alone (run by hand, after `npm run build`):
#   ROUNDS=5 bench/server/module-cost.sh [DIST...]   (default this tree's dist; arms alternate)
# A node with the server's flags imports what an OCI-layout background mount loads (the server,
# the mount, the storage read path, the layout's blob store), collects twice, and prints: modules
# V8 parsed (clip's and its packages'), their source bytes, V8 heap used, RSS (anon, file) in MB,
# and the CPU (ms) the imports took. No mount: the figures are the modules' own, without the noise
# of serving. Ends with the medians of each arm and the load average.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -gt 0 ] || set -- "$ROOT/dist"
PROBE='
const cpu0 = process.cpuUsage();
const dist = process.argv[1];
await import(dist + "/server/node-server.js"); await import(dist + "/mount/serve.js");
await import(dist + "/mount/open-image.js"); await import(dist + "/storage/index.js"); await import(dist + "/oci/layout.js");
const cpu = process.cpuUsage(cpu0);
globalThis.gc(); globalThis.gc();
const { Session } = await import("node:inspector");
const s = new Session(); s.connect();
let n = 0, bytes = 0;
s.on("Debugger.scriptParsed", (m) => { if (/\/(dist|node_modules)\//.test(m.params.url)) { n++; bytes += m.params.length; } });
await new Promise((r) => s.post("Debugger.enable", r)); s.post("Debugger.disable"); s.disconnect();
const st = (await import("node:fs")).readFileSync("/proc/self/status", "utf8");
const mb = (k) => (Number(new RegExp("^" + k + ":\\s+(\\d+)", "m").exec(st)[1]) / 1024).toFixed(1);
console.log(n, (bytes / 1024).toFixed(0), (process.memoryUsage().heapUsed / 1048576).toFixed(2), mb("VmRSS"), mb("RssAnon"), mb("RssFile"), ((cpu.user + cpu.system) / 1000).toFixed(0));'
for i in $(seq $#); do echo "arm$i: ${!i}"; done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)   (modules, source kB, heap used MB, rss anon file MB, import cpu ms)"
F=$(mktemp)
trap 'rm -f "$F"' EXIT
for r in $(seq "${ROUNDS:-5}"); do
  for i in $(seq $#); do
    echo "arm$i $r $(node --max-semi-space-size=1 --expose-gc --heap-growing-percent=25 --input-type=module -e "$PROBE" "$(cd "${!i}" && pwd)")" | tee -a "$F"
  done
done
awk '{ if (!($1 in n)) arms[++k] = $1; n[$1]++; for (i = 3; i <= 9; i++) v[$1, i, n[$1]] = $i }
  function med(arm, i,   m, j, t, a) { for (m = 1; m <= n[arm]; m++) a[m] = v[arm, i, m]
    for (m = 1; m <= n[arm]; m++) for (j = m + 1; j <= n[arm]; j++) if (a[j] < a[m]) { t = a[m]; a[m] = a[j]; a[j] = t }
    return a[int((n[arm] + 1) / 2)] }
  END { for (a = 1; a <= k; a++) { arm = arms[a]
      printf "median %s: %d modules, %d kB source, heap %.2f MB, rss %.1f (anon %.1f, file %.1f) MB, imports %d ms cpu\n", arm, med(arm, 3), med(arm, 4), med(arm, 5), med(arm, 6), med(arm, 7), med(arm, 8), med(arm, 9) } }' "$F"
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
