#!/usr/bin/env bash
# Debian packages clip's tests and benchmarks use. Installs what is missing (as root);
# otherwise names what is missing and fails.
set -euo pipefail
# binary:package
NEEDED=(
  docker-registry:docker-registry
  redis-server:redis-server
  umoci:umoci
  skopeo:skopeo
  zstd:zstd
  pigz:pigz
  fusermount3:fuse3
  mount:mount
  python3:python3
  setfattr:attr
  debootstrap:debootstrap
  runc:runc
  containerd:containerd
  ctr:containerd
  ctr-remote:stargz-snapshotter
  # Not in a minimal Debian 12 (a container image): the token registry's certificate, clip run's reapers.
  openssl:openssl
  pgrep:procps
)
# file:package, for files the tests read (containerd's snapshots.proto, which the snapshotter's
# hand-written interface definition is checked against)
FILES=(
  /usr/share/gocode/src/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto:golang-github-containerd-containerd-dev
)
missing=()
for pair in "${NEEDED[@]}"; do
  bin=${pair%%:*}; pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
for pair in "${FILES[@]}"; do
  file=${pair%%:*}; pkg=${pair#*:}
  [ -e "$file" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (install them: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt (unattended upgrades, a second test run) may hold the dpkg lock: wait for it a while.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
if ! apt-get "${LOCK_WAIT[@]}" update -qq >&2 || ! apt-get "${LOCK_WAIT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  echo "could not install Debian packages: ${missing[*]} (is another apt holding the lock, or the mirror unreachable?)" >&2
  exit 1
fi
