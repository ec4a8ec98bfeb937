#!/bin/bash
# What bench/mount/fuse-peers.ts compares clip with (run as root, from the repository root):
#   squashfuse and mksquashfs (Debian's squashfuse, squashfs-tools), and a go-fuse loopback server
#   built offline from the example Debian's golang-github-hanwen-go-fuse-dev ships, in GOPATH mode
#   with the library vendored from /usr/share/gocode, into .tmp/peers/go-fuse-loopback.
# Also needs umoci (to unpack the image's tree) and python3 (the workloads' probes).
# Idempotent: installs only what is missing, rebuilds only when the binary is absent.
# Fails with one line naming what is missing.
set -uo pipefail
die() { echo "setup-peers: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, mounts)"
cd "$(dirname "$0")/../.." || die "cannot cd to the repository root"

pkgs=(squashfuse squashfs-tools golang-go golang-github-hanwen-go-fuse-dev umoci python3 fuse3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-peers: installing ${missing[*]}" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/setup-peers-apt.log 2>&1; then
    apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/setup-peers-apt.log 2>&1 ||
      die "apt-get install ${missing[*]} failed (see /tmp/setup-peers-apt.log)"
  fi
fi
for b in squashfuse mksquashfs go umoci python3; do
  command -v "$b" >/dev/null || die "$b not on PATH after installing ${pkgs[*]}"
done

out=.tmp/peers
bin=$out/go-fuse-loopback
example=/usr/share/doc/golang-github-hanwen-go-fuse-dev/examples/loopback/main.go
lib=/usr/share/gocode/src/github.com/hanwen/go-fuse
[ -f "$example" ] || die "$example missing (golang-github-hanwen-go-fuse-dev)"
[ -d "$lib/fs" ] || die "$lib/fs missing (golang-github-hanwen-go-fuse-dev)"
if [ ! -x "$bin" ]; then
  # GOPATH mode: the example imports github.com/hanwen/go-fuse/v2/..., which Debian installs without
  # the /v2 directory; a vendor link gives it that path. golang.org/x/sys comes from /usr/share/gocode.
  gp=$(realpath -m "$out/gopath"); binabs=$(realpath -m "$bin")
  src=$gp/src/loopback
  rm -rf "$gp" && mkdir -p "$src/vendor/github.com/hanwen/go-fuse" || die "cannot create $src"
  cp "$example" "$src/main.go"
  ln -s "$lib" "$src/vendor/github.com/hanwen/go-fuse/v2"
  (cd "$src" && GO111MODULE=off GOPATH="$gp:/usr/share/gocode" GOPROXY=off GOFLAGS= GOCACHE="$gp/cache" \
    go build -o "$binabs" . ) >"$out/go-build.log" 2>&1 ||
    die "go build of the go-fuse loopback example failed (see $out/go-build.log)"
fi
[ -x "$bin" ] || die "$bin was not built"
echo "setup-peers: ok (squashfuse $(dpkg-query -W -f='${Version}' squashfuse), go-fuse $(dpkg-query -W -f='${Version}' golang-github-hanwen-go-fuse-dev), $bin)"
