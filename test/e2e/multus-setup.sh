#!/usr/bin/env bash
# E2E_VARIANT=multus: makes Multus (thin plugin) the CNI of every node of
# the cluster, in front of cni-setup.sh's ptp network. Idempotent.
#   - the NetworkAttachmentDefinition CRD and Multus' ServiceAccount/RBAC;
#   - /opt/cni/bin/multus and a kubeconfig with a token of that
#     ServiceAccount (/etc/cni/net.d/multus.d/multus.kubeconfig);
#   - /etc/cni/net.d/00-multus.conf, sorting before 10-kindnet.conflist so
#     the runtime's default network is Multus, naming that conflist as its
#     clusterNetwork. namespaceIsolation with globalNamespaces "default"
#     as on OpenShift (whose list also holds its openshift-* namespaces), so
#     a pod may name default/authbridge-cni from any namespace and nothing
#     else outside its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../hack/kind-node-image/lib.sh"
: "${KUBECONFIG:?}"
multus=$(bash "$REPO_ROOT/hack/build-tools.sh" multus)
kubectl apply -f "$here/multus/nad-crd.yaml" -f "$here/multus/rbac.yaml"
kubectl wait --for=condition=Established crd/network-attachment-definitions.k8s.cni.cncf.io --timeout=60s
internal=$(kind get kubeconfig --internal --name "$CLUSTER_NAME")
server=$(awk '/server:/{print $2; exit}' <<<"$internal")
ca=$(awk '/certificate-authority-data:/{print $2; exit}' <<<"$internal")
token=$(kubectl -n kube-system create token multus --duration=48h)
kc=$(cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: $server, certificate-authority-data: $ca}
users:
- name: multus
  user: {token: $token}
contexts:
- name: multus
  context: {cluster: local, user: multus}
current-context: multus
YAML
)
conf='{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","logLevel":"verbose","logFile":"/var/log/multus.log","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","clusterNetwork":"/etc/cni/net.d/10-kindnet.conflist","binDir":"/opt/cni/bin","cniDir":"/var/lib/cni/multus","namespaceIsolation":true,"globalNamespaces":"default"}'
for node in $(kind get nodes --name "$CLUSTER_NAME"); do
  docker cp "$multus" "$node:/opt/cni/bin/.multus.new"
  docker exec "$node" mv -f /opt/cni/bin/.multus.new /opt/cni/bin/multus
  docker exec -i "$node" sh -c 'umask 077; mkdir -p /etc/cni/net.d/multus.d && cat > /etc/cni/net.d/multus.d/multus.kubeconfig' <<<"$kc"
  # the conflist first, then Multus' config naming it (atomic rename)
  docker exec "$node" test -s /etc/cni/net.d/10-kindnet.conflist || die "$node has no 10-kindnet.conflist"
  docker exec -i "$node" sh -c 'cat > /etc/cni/net.d/.00-multus.conf.new && mv /etc/cni/net.d/.00-multus.conf.new /etc/cni/net.d/00-multus.conf' <<<"$conf"
done
log "Multus $(basename "$multus") is the CNI of $(kind get nodes --name "$CLUSTER_NAME" | wc -l) nodes"
