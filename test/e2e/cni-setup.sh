#!/usr/bin/env bash
# The primary CNI of the e2e cluster, in place of kindnetd (whose image cannot
# be pulled offline): on every node a ptp + host-local + portmap conflist for
# the node's podCIDR (what kindnetd writes to 10-kindnet.conflist) and a route
# to every other node's podCIDR via that node's IP. Idempotent.
# cniVersion 1.1.0 on containerd 2.x: only then does its CRI Status (which the
# kubelet polls every 5 s) run CNI STATUS on the chain and set NetworkReady
# from it, the behaviour a chained plugin must survive. Debian's containerd
# 1.6 (CONTAINERD=1.6) predates CNI 1.1: 1.0.0 there.
set -euo pipefail
source "$(dirname "$0")/../../hack/kind-node-image/lib.sh"
: "${KUBECONFIG:?}"
mapfile -t rows < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
cni_version=1.1.0
[[ $CONTAINERD == 1.6 ]] && cni_version=1.0.0
for row in "${rows[@]}"; do
  read -r name cidr _ <<<"$row"
  [[ -n $cidr ]] || die "node $name has no podCIDR yet"
  conf=$(cat <<JSON
{
  "cniVersion": "$cni_version",
  "name": "kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "$cidr"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
)
  # only write when missing: the agent may have chained itself into it
  docker exec -i "$name" sh -c 'test -s /etc/cni/net.d/10-kindnet.conflist || cat > /etc/cni/net.d/10-kindnet.conflist' <<<"$conf"
  for other in "${rows[@]}"; do
    read -r oname ocidr oip <<<"$other"
    [[ $oname == "$name" ]] && continue
    docker exec "$name" ip route replace "$ocidr" via "$oip"
  done
done
