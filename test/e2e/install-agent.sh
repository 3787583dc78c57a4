#!/usr/bin/env bash
# Installs the agent from its own manifests (manifests/base through
# test/e2e/overlay) with the locally built image, and waits for the rollout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../hack/kind-node-image/lib.sh"
: "${KUBECONFIG:?}"
img=$(cat "$E2E_AGENT_IMAGE_FILE")
overlay=${E2E_OVERLAY:-$here/overlay} # a variant may install through another overlay
d=$E2E_CACHE/agent-install${E2E_VARIANT:+-$E2E_VARIANT}; rm -rf "$d"; mkdir -p "$d"
cat > "$d/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$d" "$overlay")
images:
- name: ghcr.io/kagenti/authbridge-node
  newName: ${img%:*}
  newTag: ${img##*:}
YAML
kubectl kustomize "$d" > "$d/rendered.yaml"
# the image only exists on the nodes: never pull it
sed -i 's/imagePullPolicy: .*/imagePullPolicy: Never/' "$d/rendered.yaml"
grep -q "image: $img" "$d/rendered.yaml" || die "rendered manifests do not use $img"
kubectl apply -f "$d/rendered.yaml"
kubectl -n authbridge-system rollout status ds/authbridge-node --timeout=300s
