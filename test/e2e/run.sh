#!/usr/bin/env bash
# `make e2e`: from a clean machine to a 3-node kind cluster built offline,
# the agent installed from its own manifests, and the e2e scenarios run.
# Idempotent: every build product is cached under
# ${AUTHBRIDGE_CACHE:-$HOME/.cache/authbridge-node}/e2e/ keyed by version and
# reused; an existing cluster made from the same node image is reused.
# Each step's wall time goes to $E2E_LOGS/timings-<stamp>.log.
#   E2E_SKIP_TESTS=1  stop after installing the agent
#   E2E_RUN=regex     passed to go test -run
#   E2E_VARIANT=name  also source variant-<name>.sh (its own cluster, kubeconfig, node images)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../hack/kind-node-image/lib.sh"
export E2E_TIMINGS=$E2E_LOGS/timings-$(date +%Y%m%dT%H%M%S).log
export KUBECONFIG=$E2E_KUBECONFIG
t_start=$SECONDS
nib=$REPO_ROOT/hack/kind-node-image
kubebins=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

step deps env WITH_E2E=1 bash "$REPO_ROOT/hack/install-deps.sh"
step dockerd ensure_dockerd
step inotify ensure_inotify
step kube-binaries bash "$REPO_ROOT/hack/build-kube.sh" "${kubebins[@]}"
ln -sf "$AUTHBRIDGE_CACHE/kube/$KUBE_VERSION/kubectl" "$E2E_BIN/kubectl"
step go-tools bash "$nib/tools.sh"
step rootfs-node bash "$nib/rootfs.sh" node
step rootfs-tools bash "$nib/rootfs.sh" tools
step control-plane-images bash "$nib/images.sh"
step node-image bash "$nib/node.sh"
NODE_IMAGE=$(cat "$E2E_CACHE/images/node-image")
TOOLS_IMAGE=$(cat "$E2E_CACHE/images/tools-image")
# A real Prometheus and helm (module proxy, shared tools cache) for the
# monitoring and Helm scenarios.
step prometheus-helm bash "$REPO_ROOT/hack/build-tools.sh" prometheus helm
{ read -r E2E_PROMETHEUS; read -r E2E_HELM; } < <(bash "$REPO_ROOT/hack/build-tools.sh" prometheus helm)
step test-image bash -c "bash '$here/images/build.sh' > '$E2E_CACHE/images/testbin-image'"

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    local have
    have=$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null || true)
    if [[ $have == "$NODE_IMAGE" ]] && kubectl get nodes >/dev/null 2>&1; then
      log "reusing cluster $CLUSTER_NAME ($NODE_IMAGE)"; return 0
    fi
    kind delete cluster --name "$CLUSTER_NAME"
  fi
  # --image would override every node's image; a variant's config names them
  local img=(--image "$NODE_IMAGE")
  [[ $KIND_CONFIG == "$here/kind-config.yaml" ]] || img=()
  kind create cluster --name "$CLUSTER_NAME" "${img[@]}" --config "$KIND_CONFIG" \
    --kubeconfig "$KUBECONFIG" --retain 2>&1 | tee "$E2E_LOGS/kind-create.log"
}
KIND_CONFIG=$here/kind-config.yaml
load_images() { kind load docker-image --name "$CLUSTER_NAME" "$@"; }
# a variant builds what it needs and may replace KIND_CONFIG and load_images,
# set E2E_OVERLAY (the agent's install) and define variant_after_cni (run
# once the primary CNI is in place)
[[ -z ${E2E_VARIANT:-} ]] || source "$here/variant-$E2E_VARIANT.sh"
step cluster-create create_cluster
step primary-cni bash "$here/cni-setup.sh"
[[ $(type -t variant_after_cni) != function ]] || step variant-cni variant_after_cni
step nodes-ready kubectl wait --for=condition=Ready nodes --all --timeout=300s
step cluster-dns kubectl -n kube-system rollout status deploy/coredns --timeout=300s
step agent-image bash "$here/agent-image.sh"
step load-images load_images "$TOOLS_IMAGE" "$(cat "$E2E_CACHE/images/testbin-image")" "$(cat "$E2E_AGENT_IMAGE_FILE")"
step install-agent bash "$here/install-agent.sh"
log "cluster ready after $((SECONDS - t_start))s; kubeconfig: $KUBECONFIG"
[[ ${E2E_SKIP_TESTS:-0} == 1 ]] && exit 0

export E2E_LOGS AUTHBRIDGE_CACHE_E2E=$E2E_CACHE
export E2E_PROMETHEUS E2E_HELM E2E_TESTBIN_IMAGE=$(cat "$E2E_CACHE/images/testbin-image") E2E_TOOLS_IMAGE=$TOOLS_IMAGE E2E_CLUSTER=$CLUSTER_NAME E2E_REPO_ROOT=$REPO_ROOT
step go-test bash -c "cd '$REPO_ROOT' && go test -tags e2e -count=1 -timeout 60m -v -run '${E2E_RUN:-.}' ./test/e2e/ 2>&1 | tee '$E2E_LOGS/go-test${E2E_VARIANT:+-$E2E_VARIANT}.log'; exit \${PIPESTATUS[0]}"
log "make e2e done in $((SECONDS - t_start))s; timings: $E2E_TIMINGS"
