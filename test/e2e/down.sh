#!/usr/bin/env bash
# `make e2e-down`: deletes the e2e cluster and any leftover build container.
# The build cache stays (it is what makes the next `make e2e` fast); set
# E2E_PURGE=1 to also remove the cache and the e2e images.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/../../hack/kind-node-image/lib.sh"
if docker info >/dev/null 2>&1; then
  if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$E2E_KUBECONFIG"
  fi
  docker ps -aq --filter name=authbridge-node-build- | xargs -r docker rm -f >/dev/null
  if [[ ${E2E_PURGE:-0} == 1 ]]; then
    docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(authbridge-e2e/|registry.k8s.io/)' | xargs -r docker rmi -f >/dev/null
  fi
fi
rm -f "$E2E_KUBECONFIG"
[[ ${E2E_PURGE:-0} == 1 ]] && rm -rf "$E2E_CACHE"
log "e2e cluster $CLUSTER_NAME removed"
