// Package podmode holds the words the plugin and the node agent share about
// a pod: the mode the plugin gave it and the reason why. The plugin decides
// them (internal/podinfo), records them (pkg/containerstate) and reports them
// (pkg/pluginevents); the agent turns them into metrics labels and Events.
// Defined once here so a word cannot drift between the two binaries.
package podmode

// Mode is what the plugin does to a pod.
type Mode string

const (
	// EnforceRedirect programs and verifies the redirect rules.
	EnforceRedirect Mode = "enforce-redirect"
	// Cooperative leaves the pod without rules (allowed by the admin).
	Cooperative Mode = "cooperative"
	// Skip leaves a pod without the AuthBridge sidecar (or not a
	// Kubernetes pod) alone.
	Skip Mode = "skip"
)

// Modes lists every mode.
var Modes = []Mode{EnforceRedirect, Cooperative, Skip}

// skippedLabel is Skip's word in events and metrics labels: "skipped"
// reads better in a metric ("pods skipped"), while the container records
// say "skip"; both are kept as they are for compatibility with the other
// binary's version.
const skippedLabel = "skipped"

// Label is the mode's word in plugin events and in metrics labels
// (authbridge_cni_pods_total{mode}, authbridge_pods{mode}).
func (m Mode) Label() string {
	if m == Skip {
		return skippedLabel
	}
	return string(m)
}

// FromLabel is the inverse of Label; ok is false for an unknown word.
func FromLabel(label string) (Mode, bool) {
	for _, m := range Modes {
		if m.Label() == label {
			return m, true
		}
	}
	return "", false
}

// Labels are the labels of every mode, in Modes order.
func Labels() []string {
	out := make([]string, len(Modes))
	for i, m := range Modes {
		out[i] = m.Label()
	}
	return out
}

// Reason says where the decision came from; used in logs, events, metrics.
type Reason string

const (
	ReasonAnnotation         Reason = "annotation"
	ReasonNamespaceConfigMap Reason = "namespace-configmap"
	ReasonClusterDefault     Reason = "cluster-default"
	ReasonAutoIncapableNode  Reason = "auto-incapable-node"
	// ReasonVMRuntimeClass: an auto pod in a VM sandbox (Kata), where rules
	// in the pod netns cannot see the guest's traffic.
	ReasonVMRuntimeClass Reason = "vm-runtime-class"
	// ReasonSandboxedRuntime: an auto pod whose runtime handler (its
	// RuntimeClass's, else the node's default) is not in
	// netfilterRuntimeHandlers: its traffic may never cross the pod netns's
	// netfilter (gVisor's netstack, a VM), so rules there prove nothing.
	ReasonSandboxedRuntime Reason = "sandboxed-runtime"
	// ReasonNoSidecar: the pod has no AuthBridge sidecar (mode Skip).
	ReasonNoSidecar Reason = "no-sidecar"
	// ReasonNotAPod: CNI_ARGS name no Kubernetes pod (mode Skip).
	ReasonNotAPod Reason = "not-a-kubernetes-pod"
	// ReasonExcludedNamespace: the pod's namespace is in excludeNamespaces;
	// passed through (mode Skip) before anything is read about it.
	ReasonExcludedNamespace Reason = "excluded-namespace"
)

// CooperativeReasons are the reasons a pod can be Cooperative for, the
// values of authbridge_cooperative_pods_total{reason}.
var CooperativeReasons = []Reason{ReasonAnnotation, ReasonNamespaceConfigMap, ReasonClusterDefault, ReasonAutoIncapableNode, ReasonVMRuntimeClass, ReasonSandboxedRuntime}

// Warns reports whether a cooperative pod with this reason deserves a
// Warning Event rather than a Normal one: nobody chose cooperative for it,
// the node or the sandbox could not enforce.
func (r Reason) Warns() bool {
	return r == ReasonAutoIncapableNode || r == ReasonVMRuntimeClass || r == ReasonSandboxedRuntime
}
