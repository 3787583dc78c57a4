#!/usr/bin/env bash
# Builds the e2e test image (FROM scratch: /standin-sidecar and /netcheck)
# and prints its tag; the tag is the hash of the sources, so it is rebuilt
# only when they change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../../hack/kind-node-image/lib.sh"
key=$(cat "$here"/*/main.go "$0" | sha256sum | cut -c1-12)
img=authbridge-e2e/testbin:$key
if ! docker image inspect "$img" >/dev/null 2>&1; then
  ctx=$E2E_CACHE/images/testbin-ctx; rm -rf "$ctx"; mkdir -p "$ctx"
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ctx/standin-sidecar" ./test/e2e/images/standin-sidecar \
    && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ctx/netcheck" ./test/e2e/images/netcheck)
  printf 'FROM scratch\nCOPY standin-sidecar netcheck /\nENTRYPOINT ["/netcheck"]\n' > "$ctx/Dockerfile"
  docker build -q -t "$img" "$ctx" >/dev/null
fi
echo "$img"
