#!/usr/bin/env bash
# Builds the node agent image without pulling anything (see Dockerfile):
#   static binaries on the host + a rootfs holding Debian's iptables.
#   IMAGE=ghcr.io/kagenti/authbridge-node:dev hack/image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-ghcr.io/kagenti/authbridge-node:latest}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
out=_output/image
rm -rf "$out"; mkdir -p "$out/rootfs"

WITH_E2E=1 bash hack/install-deps.sh   # docker.io, iptables

export CGO_ENABLED=0
go build -trimpath -ldflags "-s -w -X github.com/kagenti/authbridge-node/internal/agent/cli.Version=$VERSION" -o "$out/node-agent" ./cmd/node-agent
go build -trimpath -ldflags "-s -w" -o "$out/authbridge-cni" ./cmd/cni-plugin

# Debian's iptables: the multi-call binaries, every name pointing at them,
# their shared libraries (ldd closure, with the dynamic loader) and the
# xtables extension modules.
copy() { mkdir -p "$out/rootfs$(dirname "$1")"; cp -a "$1" "$out/rootfs$1"; }
bins=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi)
for b in "${bins[@]}"; do copy "$b"; done
for n in iptables ip6tables; do
  for v in nft legacy; do
    for s in "" -save -restore; do
      ln -sf "xtables-$v-multi" "$out/rootfs/usr/sbin/$n-$v$s"
    done
  done
done
# awk reads dpkg's whole output: grep -m1 closed the pipe early, and under
# pipefail dpkg's SIGPIPE ended this script silently now and then.
xtdir=$(dpkg -L iptables | awk '/\/xtables$/ && !f {print; f=1}')   # /usr/lib/<triplet>/xtables
for f in "${bins[@]}" "$xtdir"/*.so; do
  { ldd "$f" 2>/dev/null || true; } | awk '/=>/ {print $3} /ld-linux/ {print $1}'
done | sort -u | while read -r lib; do
  [[ -e $lib ]] || continue
  copy "$(readlink -f "$lib")"
  [[ $(readlink -f "$lib") == "$lib" ]] || { mkdir -p "$out/rootfs$(dirname "$lib")"; ln -sf "$(readlink -f "$lib")" "$out/rootfs$lib"; }
done
mkdir -p "$out/rootfs$xtdir"; cp -a "$xtdir"/*.so "$out/rootfs$xtdir/"
# The files iptables reads.
mkdir -p "$out/rootfs/etc" "$out/rootfs/run" "$out/rootfs/tmp" "$out/rootfs/var/run"
cp /etc/protocols /etc/services "$out/rootfs/etc/" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/sbin/nologin' > "$out/rootfs/etc/passwd"

if ! docker info >/dev/null 2>&1; then
  echo "image.sh: starting dockerd" >&2
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
# --no-cache: the classic builder misses symlink-only changes in the rootfs.
docker build --no-cache -t "$IMAGE" -f Dockerfile .
# Smoke test: the binaries run inside the image.
docker run --rm --entrypoint /opt/authbridge/bin/node-agent "$IMAGE" version
docker run --rm --entrypoint /usr/sbin/iptables-nft "$IMAGE" --version
docker run --rm --entrypoint /usr/sbin/iptables-legacy "$IMAGE" --version
echo "$IMAGE"
