#!/usr/bin/env bash
# Builds Multus' thin plugin (cmd/multus) from the Go module proxy at a
# pinned version, for the Multus e2e variant (E2E_VARIANT=multus) and the
# tests that run our plugin as a Multus delegate:
#   hack/build-multus.sh        # prints the binary's path
# The binary lands in ${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}/tools/
# as multus-<version> and is reused when present.
#
# Multus' go.mod pins k8s.io/* with a replace block; replace directives of a
# dependency are ignored, so the wrapper module carries a copy of it (the
# same reason hack/build-kube.sh rewrites Kubernetes' staging modules).
# About 4 min cold on 2 cores.
set -euo pipefail
MULTUS_VERSION=${MULTUS_VERSION:-v4.1.0}
mod=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
cache=${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}
out=$cache/tools
bin=$out/multus-$MULTUS_VERSION
mkdir -p "$out"
if [[ -x $bin ]]; then echo "$bin"; exit 0; fi
exec 9>"$cache/tools-build.lock"; flock 9
if [[ -x $bin ]]; then echo "$bin"; exit 0; fi
echo "build-multus: building $mod/cmd/multus@$MULTUS_VERSION (first run only, about 4 min)" >&2
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  go mod init authbridge-multus-wrapper >/dev/null 2>&1
  go mod download -json "$mod@$MULTUS_VERSION" >download.json
  src=$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' download.json)
  # The replace block of Multus' own go.mod, verbatim.
  awk '/^replace \(/{p=1} p{print} p&&/^\)/{p=0}' "$src/go.mod" >>go.mod
  go mod edit -require="$mod@$MULTUS_VERSION"
  go get "$mod/cmd/multus@$MULTUS_VERSION"
  CGO_ENABLED=0 go build -ldflags "-s -w" -o multus "$mod/cmd/multus"
) >&2
mv "$tmp/multus" "$bin"
echo "$bin"
