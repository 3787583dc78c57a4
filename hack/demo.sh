#!/usr/bin/env bash
# make demo: build the plugin and the CNI reference plugins, then run the
# demo (hack/demo/main.go) as root. No cluster needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "make demo needs root (network namespaces, netfilter)"; exit 1; }
mkdir -p bin/cni
export CGO_ENABLED=0
go build -o bin/cni/authbridge-cni ./cmd/cni-plugin
for p in bridge loopback; do go build -o bin/cni/$p github.com/containernetworking/plugins/plugins/main/$p; done
go build -o bin/cni/host-local github.com/containernetworking/plugins/plugins/ipam/host-local
go build -o bin/demo ./hack/demo
exec bin/demo -cni-bin-dir bin/cni "$@"
