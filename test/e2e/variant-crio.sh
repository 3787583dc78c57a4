# E2E_VARIANT=crio (sourced by run.sh before the cluster is created): the two
# workers run CRI-O instead of containerd (hack/kind-node-image/node-crio.sh),
# the control-plane stays on the default node image. Own cluster
# (authbridge-crio) and kubeconfig (lib.sh). kind's `kind load` imports with
# ctr (containerd), so the workers get their images from crio-load.sh.
step node-image-crio bash "$nib/node-crio.sh"
CRIO_NODE_IMAGE=$(cat "$E2E_CACHE/images/node-crio-image")
KIND_CONFIG=$E2E_CACHE/kind-config-crio.yaml
# kind's kubeadm config names containerd's socket for every node; the workers
# join with CRI-O's (kubeadm writes it into the kubelet's flags).
crio_worker() {
  cat <<YAML
- role: worker
  image: $CRIO_NODE_IMAGE
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      criSocket: unix:///var/run/crio/crio.sock
YAML
}
{ sed '/^nodes:/,$d' "$here/kind-config.yaml"
  echo "nodes:"
  printf -- '- role: control-plane\n  image: %s\n' "$NODE_IMAGE"
  crio_worker; crio_worker
  sed -n '/^kubeadmConfigPatches:/,$p' "$here/kind-config.yaml"
} > "$KIND_CONFIG"
# run.sh reuses a cluster whose control-plane has the right image; the
# workers must have the CRI-O image too.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME" &&
  [[ $(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-worker" 2>/dev/null || true) != "$CRIO_NODE_IMAGE" ]]; then
  log "cluster $CLUSTER_NAME has other worker images: recreating"
  kind delete cluster --name "$CLUSTER_NAME"
fi
load_images() {
  kind load docker-image --name "$CLUSTER_NAME" --nodes "$CLUSTER_NAME-control-plane" "$@"
  local n
  for n in "$CLUSTER_NAME-worker" "$CLUSTER_NAME-worker2"; do
    bash "$here/crio-load.sh" "$n" "$@"
  done
}
# the scenarios that say something about the runtime: its CNI calls, how a
# pod's netns is found (repair in place, drift), start times; E2E_RUN overrides
: "${E2E_RUN:=^(TestAgentReadyOnAllNodes|TestEnforceRedirectAcrossNodes|TestConflistRewriteReinserted|TestAgentMetrics|TestCRIO.*|TestRepairInPlaceAfterAgentGap|TestDriftRepairedWithinInterval|TestTimeToEnforced|TestPodStartTimeFigures)$}"
export E2E_VARIANT
