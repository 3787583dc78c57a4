#!/usr/bin/env bash
# `kind load docker-image` for a CRI-O kind node (E2E_VARIANT=crio): kind's
# loader imports with ctr into containerd, which a CRI-O node does not run.
# Each image goes from docker save through skopeo (Debian's, in the node
# image) into containers-storage, under its docker.io name so the short
# names the manifests use resolve (registries.conf in the node image).
# Skipped when the node already has the same image ID.
#   crio-load.sh NODE IMAGE...
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/../../hack/kind-node-image/lib.sh"
node=${1:?node}; shift
for img in "$@"; do
  ref=$img   # docker's normalisation: the first component is a registry if it has . or : or is localhost
  if [[ $img != */* ]]; then ref=docker.io/library/$img
  elif [[ ! ( ${img%%/*} == *[.:]* || ${img%%/*} == localhost ) ]]; then ref=docker.io/$img; fi
  id=$(docker image inspect -f '{{.Id}}' "$img") || die "image $img not in docker"
  have=$(docker exec "$node" sh -c "skopeo inspect --raw --config containers-storage:$ref 2>/dev/null | sha256sum | cut -d' ' -f1" || true)
  if [[ sha256:$have == "$id" ]]; then log "$node already has $ref"; continue; fi
  log "loading $ref into $node (CRI-O)"
  docker save "$img" | docker exec -i "$node" sh -c "cat > /tmp/crio-load.tar && skopeo copy --quiet docker-archive:/tmp/crio-load.tar containers-storage:$ref; rc=\$?; rm -f /tmp/crio-load.tar; exit \$rc" ||
    die "loading $img into $node failed"
done
