# E2E_VARIANT=multus (sourced by run.sh before the cluster is created):
# Multus v4.1.0's thin plugin (built by hack/build-tools.sh from the Go
# module proxy) as every node's CNI, delegating to the ptp network that
# cni-setup.sh writes (Multus' clusterNetwork), with OpenShift's namespace
# isolation; the NetworkAttachmentDefinition CRD; the agent installed
# through the OpenShift overlay (overlay-multus: minus the SCC and RHCOS'
# paths), where cniInstallMode auto picks multus-attachment. Own cluster
# (authbridge-multus) and kubeconfig (lib.sh).
step multus-build bash "$REPO_ROOT/hack/build-tools.sh" multus
E2E_OVERLAY=$here/overlay-multus
variant_after_cni() { bash "$here/multus-setup.sh"; }
# the scenarios this variant is about (the others assume the agent chains
# itself into 10-kindnet.conflist); E2E_RUN overrides
: "${E2E_RUN:=^(TestAgentReadyOnAllNodes|TestEnforceRedirectAcrossNodes|TestMultus.*|TestPodStartTimeFigures)$}"
export E2E_VARIANT E2E_OVERLAY
