#!/usr/bin/env bash
# Measures the real node-agent binary idling against a real kube-apiserver:
# VmRSS and CPU (utime+stime) over AUTHBRIDGE_MEASURE_SECONDS (default 30).
# Needs root (the capability probe), etcd and kube-apiserver (built/cached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
bash hack/build-kube.sh kube-apiserver >/dev/null   # before go test's timeout starts
go test -count=1 -run '^$' -bench BenchmarkAgentIdle -benchtime 1x ./cmd/node-agent/
