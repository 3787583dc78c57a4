#!/usr/bin/env bash
# Builds (once, cached by version) every Go program the offline kind pipeline
# needs from the Go module proxy: the kind CLI, crictl, the CNI reference
# plugins, etcd, CoreDNS, the pause program and containerd 2.x.
#   tools.sh [kind|crictl|cni|etcd|coredns|pause|containerd ...]   (default: all)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

build_kind() { gobuild "$E2E_BIN/kind-$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"; ln -sf "kind-$KIND_VERSION" "$E2E_BIN/kind"; }
build_crictl() { gobuild "$E2E_BIN/crictl-$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"; }
build_cni() {
  local p d=$E2E_BIN/cni-$CNI_PLUGINS_VERSION
  mkdir -p "$d"
  for p in plugins/ipam/host-local plugins/main/loopback plugins/main/ptp plugins/main/bridge plugins/meta/portmap; do
    gobuild "$d/$(basename $p)" "github.com/containernetworking/plugins/$p@$CNI_PLUGINS_VERSION"
  done
}
# etcd's and CoreDNS's go.mod use replace directives / are large: build them
# from wrapper modules so `go install pkg@version` restrictions don't apply.
wrapbuild() { # OUT MODULE VERSION PKG [TAGS [LDFLAGS]]
  local out=$1 mod=$2 ver=$3 pkg=$4 tags=${5:-} ldx=${6:-}
  [[ -x $out ]] && return 0
  local w=$E2E_CACHE/gowrap/$(basename "$out")
  mkdir -p "$w"
  log "building $pkg ($mod@$ver) -> $out"
  (
    cd "$w"
    [[ -f go.mod ]] || printf 'module wrap\n\ngo 1.24\n' > go.mod
    # not the usual "tools" tag: it would pull in dependencies' own tools.go
    printf '//go:build authbridge_wrap\n\npackage wrap\n\nimport _ "%s"\n' "$pkg" > tools.go
    GOFLAGS=-mod=mod go get "$mod@$ver" >build.log 2>&1 &&
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "-s -w $ldx" -o "$out.tmp" "$pkg" >>build.log 2>&1 &&
      mv "$out.tmp" "$out"
  ) || die "building $pkg failed: $(tail -5 "$w/build.log")"
}
build_etcd() { wrapbuild "$E2E_BIN/etcd-$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3; }
build_coredns() { wrapbuild "$E2E_BIN/coredns-$COREDNS_VERSION" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns; }
# containerd as kind's base image builds it (same build tags), static: the
# daemon, the runc v2 shim and ctr; runc itself is Debian's.
build_containerd() {
  local p d=$E2E_BIN/containerd-$CONTAINERD_VERSION m=github.com/containerd/containerd/v2
  mkdir -p "$d"
  for p in cmd/containerd cmd/containerd-shim-runc-v2 cmd/ctr; do
    wrapbuild "$d/$(basename $p)" "$m" "$CONTAINERD_VERSION" "$m/$p" "no_aufs no_zfs no_btrfs no_devmapper" \
      "-X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=github.com/containerd/containerd/v2"
  done
}
# CRI-O for the E2E_VARIANT=crio worker: cmd/crio needs cgo (libseccomp,
# gpgme from Debian: hack/install-deps.sh with WITH_CRIO=1) and runs on a
# bookworm node like this host, so it links against the same libraries;
# pinns (C, in the same module) is built with make. GONOSUMDB: the checksum
# database does not serve those two modules' lookups here.
build_crio() {
  local d=$E2E_BIN/crio-$CRIO_VERSION m=github.com/cri-o/cri-o
  [[ -x $d/crio && -x $d/pinns ]] && return 0
  local w=$E2E_CACHE/gowrap/crio-$CRIO_VERSION
  mkdir -p "$d" "$w"
  log "building $m/cmd/crio@$CRIO_VERSION and pinns -> $d"
  (
    cd "$w"
    export GONOSUMDB=github.com/containerd/nri,github.com/CloudNativeAI GOFLAGS=-mod=mod
    [[ -f go.mod ]] || printf 'module wrap\n\ngo 1.24\n' > go.mod
    printf '//go:build authbridge_wrap\n\npackage wrap\n\nimport _ "%s"\n' "$m/cmd/crio" > tools.go
    go get "$m@$CRIO_VERSION" >build.log 2>&1 &&
      CGO_ENABLED=1 go build -trimpath \
        -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp" \
        -ldflags "-s -w" -o "$d/crio.tmp" "$m/cmd/crio" >>build.log 2>&1 &&
      mv "$d/crio.tmp" "$d/crio" &&
      src=$(go list -m -f '{{.Dir}}' "$m") && rm -rf pinns && cp -r "$src/pinns" pinns && chmod -R u+w pinns &&
      make -C pinns >>build.log 2>&1 && cp bin/pinns "$d/pinns"
  ) || die "building CRI-O failed: $(tail -5 "$w/build.log")"
}
build_pause() {
  [[ -x $E2E_BIN/pause-$PAUSE_VERSION ]] && return 0
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$E2E_BIN/pause-$PAUSE_VERSION" ./hack/kind-node-image/pause)
}

exec 8>"$E2E_CACHE/tools.lock"; flock 8   # one builder at a time: shared wrapper dirs
what=("$@"); ((${#what[@]})) || what=(kind crictl cni pause etcd coredns containerd)
for t in "${what[@]}"; do "build_$t"; done
