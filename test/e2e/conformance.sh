#!/usr/bin/env bash
# `make e2e-conformance`: Kubernetes' own [sig-network] conformance tests
# (e2e.test v1.34.4 from the module proxy, test images built locally) on the
# kind cluster of `make e2e`, twice on the same cluster: without the plugin
# (the agent uninstalled, DaemonSet first, as docs/operations.md says; entry
# and binary checked gone on every node) and with it (the agent reinstalled,
# entry and binary checked on every node). Not in CI, not part of make test.
#
#   CONFORMANCE_SET=conformance  [sig-network] ... [Conformance] only (default)
#   CONFORMANCE_SET=network      every [sig-network] test that needs no cloud
#                                load balancer, no outside network, no second
#                                IP family, no feature and no node disruption
#                                (the skip regex below; CONFORMANCE_SKIP
#                                replaces it)
#   CONFORMANCE_MODES="without with"   which runs, in that order (default both)
#   CONFORMANCE_PROCS=4          parallel ginkgo processes ([Serial] specs are
#                                skipped by the skip regex)
# Writes under $E2E_LOGS/conformance-<stamp>/<mode>/: junit_01.xml,
# ginkgo.log, counts.txt, passed.txt, failed.txt, skipped.txt; and in the
# stamp directory compare.txt (the specs that passed in one run only),
# summary.txt and readme-table.md (the counts as test/e2e/README.md's table).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../hack/kind-node-image/lib.sh"
export KUBECONFIG=$E2E_KUBECONFIG
set_name=${CONFORMANCE_SET:-conformance}
modes=${CONFORMANCE_MODES:-without with}
procs=${CONFORMANCE_PROCS:-4}
# Skipped, and why (test/e2e/README.md, "Kubernetes conformance"):
#   [Serial], [Disruptive]: change the whole cluster or its nodes (none of
#   the 45 [sig-network] [Conformance] specs of v1.34.4 is either);
#   [Slow]: over 5 min each; [Flaky]: upstream says so; Feature:...: need a
#   feature or add-on this cluster does not have (cloud load balancers,
#   SCTP, NetworkPolicy enforcement, IPv6 and dual-stack, Internet access:
#   "should provide Internet connection" is [Feature:Networking-IPv4]);
#   LoadBalancer: the one unlabelled spec that needs a cloud load balancer.
# Specs that find their environment missing at run time (a provider, zones)
# skip themselves and are counted as skipped, not passed.
case $set_name in
  conformance) focus='\[sig-network\].*\[Conformance\]'; dskip='\[Serial\]|\[Disruptive\]' ;;
  network) focus='\[sig-network\]'; dskip='\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]|Feature:|LoadBalancer' ;;
  *) die "CONFORMANCE_SET=$set_name: want conformance or network" ;;
esac
skip=${CONFORMANCE_SKIP:-$dskip}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$E2E_LOGS/conformance-$stamp
mkdir -p "$out"
export E2E_TIMINGS=$out/timings.log
t_start=$SECONDS

step e2e-test-binaries bash "$REPO_ROOT/hack/build-kube-e2e.sh" e2e.test ginkgo
kube=$AUTHBRIDGE_CACHE/kube/$KUBE_VERSION
step test-images bash -c "bash '$here/conformance-images.sh' > '$out/images.txt'"
# The cluster with the agent installed (reused when up); run.sh installs the
# agent from this worktree and leaves the rendered manifests behind: keep a
# copy, the reinstall applies exactly what was installed.
step cluster env E2E_SKIP_TESTS=1 bash "$here/run.sh"
cp "$E2E_CACHE/agent-install${E2E_VARIANT:+-$E2E_VARIANT}/rendered.yaml" "$out/agent.yaml"
mapfile -t images < "$out/images.txt"
step load-test-images kind load docker-image --name "$CLUSTER_NAME" "${images[@]}"
mapfile -t nodes < <(kind get nodes --name "$CLUSTER_NAME" | sort)

# This machine's own gateway answers TCP port 80 for any address (its egress
# proxy: `curl http://10.96.255.166/` from the host gets a 404), so a packet
# to a ClusterIP that no longer exists, which kube-proxy leaves untouched and
# the node routes out to its default gateway, gets an HTTP answer; on a real
# network it gets none. Three [sig-network] specs check that a deleted
# Service no longer answers from a hostNetwork pod and failed on that alone
# (with and without the plugin). On every node, a packet to the Service CIDR
# that kube-proxy did not DNAT is refused before it leaves the node, as the
# network outside a real cluster would drop it. Both runs get the same rule.
service_cidr=$(kubectl -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' | awk '/serviceSubnet:/{print $2}')
[[ -n $service_cidr ]] || die "no serviceSubnet in the kubeadm-config ConfigMap"
reject_unrouted_service_ips() {
  local n chain
  for n in "${nodes[@]}"; do
    for chain in OUTPUT FORWARD; do
      docker exec "$n" sh -c "iptables -C $chain -d $service_cidr -o eth0 -j REJECT 2>/dev/null || iptables -I $chain -d $service_cidr -o eth0 -j REJECT" ||
        die "$n: cannot add the Service CIDR reject rule to $chain"
    done
  done
}
step reject-unrouted-service-ips reject_unrouted_service_ips

# plugin_on_nodes yes|no: the conflist entry and the binary on every node.
plugin_on_nodes() {
  local want=$1 n entry bin
  for n in "${nodes[@]}"; do
    entry=no; bin=no
    docker exec "$n" sh -c 'grep -qs authbridge-cni /etc/cni/net.d/*' && entry=yes
    docker exec "$n" test -e /opt/cni/bin/authbridge-cni && bin=yes
    log "$n: conflist entry $entry, binary $bin"
    [[ $entry == "$want" && $bin == "$want" ]] || return 1
  done
}
uninstall_agent() {
  if kubectl -n authbridge-system get ds authbridge-node >/dev/null 2>&1; then
    kubectl -n authbridge-system delete daemonset authbridge-node --wait --timeout=180s
    kubectl -n authbridge-system wait --for=delete pod -l app.kubernetes.io/component=node-agent --timeout=180s || true
  fi
  plugin_on_nodes no || die "the agent is uninstalled but a node still has the plugin's entry or binary"
}
install_agent() {
  kubectl apply -f "$out/agent.yaml" >/dev/null
  kubectl -n authbridge-system rollout status ds/authbridge-node --timeout=300s
  local i
  for i in $(seq 30); do plugin_on_nodes yes && return 0; sleep 2; done
  die "the agent is installed but a node lacks the plugin's entry or binary"
}

# plugin_adds: the plugin's ADDs per mode on all nodes since the agent was
# reinstalled (authbridge_cni_pods_total from each agent's metrics), the
# proof that the suite's pods went through the chained plugin.
plugin_adds() {
  local n ip
  for n in "${nodes[@]}"; do
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$n")
    curl -s --max-time 5 "http://$ip:9860/metrics" | grep '^authbridge_cni_pods_total' || true
  done | awk '{split($1, a, "\""); sum[a[2]] += $2} END {printf "with: plugin ADDs"; for (m in sum) printf " %s=%d", m, sum[m]; print ""}'
}

# Specs that need several nodes read the count from --num-nodes (default -1:
# "Requires at least 2 nodes (not -1)"); kind's own conformance job passes
# its worker count the same way.
workers=$(kubectl get nodes --no-headers -l '!node-role.kubernetes.io/control-plane' | wc -l)

# run_suite MODE: e2e.test through ginkgo (parallel processes), then the sums.
run_suite() {
  local mode=$1 dir=$out/$1 rc=0
  mkdir -p "$dir"
  log "e2e.test ($mode the plugin): focus $focus, skip $skip, $procs processes; log $dir/ginkgo.log"
  "$kube/ginkgo" --procs="$procs" --no-color --silence-skips --timeout=3h --flake-attempts=0 \
    --focus="$focus" --skip="$skip" "$kube/e2e.test" -- \
    --kubeconfig="$KUBECONFIG" --provider=skeleton --num-nodes="$workers" --report-dir="$dir" \
    --kubectl-path="$AUTHBRIDGE_CACHE/kube/$KUBE_VERSION/kubectl" \
    --dump-logs-on-failure=false --disable-log-dump >"$dir/ginkgo.log" 2>&1 || rc=$?
  [[ -s $dir/junit_01.xml ]] || die "e2e.test ($mode) wrote no JUnit report (exit $rc); see $dir/ginkgo.log"
  (cd "$REPO_ROOT" && go run ./test/e2e/junitsum -out "$dir" "$dir/junit_01.xml") | tee -a "$out/summary.txt" | sed "s/^/$mode: /" >&2
  log "e2e.test ($mode) exit $rc"
}

for mode in $modes; do
  case $mode in
    without) step uninstall-agent uninstall_agent ;;
    with) step install-agent install_agent ;;
    *) die "CONFORMANCE_MODES: unknown mode $mode (want without, with)" ;;
  esac
  t0=$SECONDS
  step "suite-$mode" run_suite "$mode"
  echo "$mode: wall $((SECONDS - t0)) s" >> "$out/summary.txt"
  [[ $mode == with ]] && plugin_adds >> "$out/summary.txt"
done
# The agent stays installed, as make e2e leaves it.
kubectl -n authbridge-system get ds authbridge-node >/dev/null 2>&1 || step install-agent install_agent

if [[ -d $out/without && -d $out/with ]]; then
  {
    echo "passed without the plugin only:"; comm -23 "$out/without/passed.txt" "$out/with/passed.txt"
    echo "passed with the plugin only:"; comm -13 "$out/without/passed.txt" "$out/with/passed.txt"
  } > "$out/compare.txt"
  cat "$out/compare.txt" >&2
fi
{ echo "set $set_name, focus $focus"; echo "skip $skip"; echo "total wall $((SECONDS - t_start)) s"; } >> "$out/summary.txt"
# The counts as the table of test/e2e/README.md ("Kubernetes conformance"),
# to paste there with the date and versions.
if [[ -d $out/without && -d $out/with ]]; then
  count() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$out/$1/counts.txt"; }
  wall() { sed -n "s/^$1: wall \([0-9]*\) s/\1/p" "$out/summary.txt"; }
  {
    echo "| | without the plugin | with the plugin |"
    echo "| --- | --- | --- |"
    echo "| passed | **$(count without passed)** | **$(count with passed)** |"
    echo "| of which \`[Conformance]\` | $(grep -c 'Conformance\]' "$out/without/passed.txt") | $(grep -c 'Conformance\]' "$out/with/passed.txt") |"
    echo "| failed | $(count without failed) | $(count with failed) |"
    echo "| skipped at run time | $(count without skipped) | $(count with skipped) |"
    echo "| wall time of the suite | $(wall without) s | $(wall with) s |"
  } > "$out/readme-table.md"
  cat "$out/readme-table.md" >&2
fi
log "conformance done in $((SECONDS - t_start))s: $out"
