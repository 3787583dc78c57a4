#!/usr/bin/env bash
# make demo: build kube-apiserver (first run only), the plugin and the CNI
# reference plugins, then run the demo (hack/demo/main.go) as root. No cluster
# needed. Every build happens here, before the demo's own 5-minute timeout
# starts: a first run on a fresh machine compiles for minutes, and that must
# not count against the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "make demo needs root (network namespaces, netfilter)"; exit 1; }
say() { echo "demo: $*" >&2; }
took() { local s=$((SECONDS - $1)); say "  done in $((s / 60)) min $((s % 60)) s"; }

t0=$SECONDS
say "[1/3] kube-apiserver (hack/build-kube.sh; cached after the first run)"
apidir=$(bash hack/build-kube.sh kube-apiserver)
took $t0

t0=$SECONDS
say "[2/3] building authbridge-cni, the CNI reference plugins and the demo: first run about 1 min, then seconds"
mkdir -p bin/cni
export CGO_ENABLED=0
go build -o bin/cni/authbridge-cni ./cmd/cni-plugin
for p in bridge loopback; do go build -o bin/cni/$p github.com/containernetworking/plugins/plugins/main/$p; done
go build -o bin/cni/host-local github.com/containernetworking/plugins/plugins/ipam/host-local
go build -o bin/demo ./hack/demo
took $t0

say "[3/3] running the demo (about 15 s)"
AUTHBRIDGE_KUBE_APISERVER=$apidir/kube-apiserver exec bin/demo -cni-bin-dir bin/cni "$@"
