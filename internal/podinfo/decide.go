package podinfo

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// Decision is the outcome of Decide.
type Decision struct {
	Mode   podmode.Mode
	Reason podmode.Reason
	// Backends are the node's working backends in the policy's preference
	// order; set only for podmode.EnforceRedirect.
	Backends []string
	// Requested is the configured mode that led here (for logs).
	Requested config.Mode
}

// ErrNoNodeState is returned (wrapped) when the decision needs the node's
// probe results and the caller has none.
var ErrNoNodeState = errors.New("the node state (which redirect backends work on this node) is unavailable")

// IsAuthBridgePod reports whether the pod carries the AuthBridge sidecar: a
// container, or a native sidecar init container (restartPolicy Always),
// named in sidecarNames.
func IsAuthBridgePod(pod *corev1.Pod, sidecarNames []string) bool {
	if pod == nil {
		return false
	}
	named := func(n string) bool {
		for _, s := range sidecarNames {
			if s == n {
				return true
			}
		}
		return false
	}
	for _, c := range pod.Spec.Containers {
		if named(c.Name) {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if named(c.Name) && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	return false
}

// Decide chooses the pod's mode. policy must be defaulted (WithDefaults).
// state may be nil when the node state could not be read; Decide then fails
// (wrapping ErrNoNodeState) for every mode that needs it.
//
// handler is the runtime handler of the pod's RuntimeClass, "" when the pod
// has none (then the node's default handler from state counts). Only pods
// of a handler in policy.NetfilterRuntimeHandlers get rules.
func Decide(pod *corev1.Pod, ns NamespaceConfig, policy config.Policy, state *nodestate.State, handler string) (Decision, error) {
	if pod == nil {
		return Decision{}, errors.New("no pod to decide for")
	}
	if !IsAuthBridgePod(pod, policy.SidecarContainerNames) {
		return Decision{Mode: podmode.Skip, Reason: podmode.ReasonNoSidecar}, nil
	}
	requested, reason, err := requestedMode(pod, ns, policy)
	if err != nil {
		return Decision{}, err
	}
	where := describe(reason, pod)
	cooperative := func(r podmode.Reason, why string) (Decision, error) {
		if !policy.AllowCooperative {
			return Decision{}, fmt.Errorf("pod %s/%s: %s, but cooperative mode (no redirect rules) is not allowed on this cluster: "+
				"either use egress enforcement %q, or let the cluster admin enable cooperative mode with allowCooperative: true and acknowledgeCooperativeRisks: %q in the authbridge node agent config (read %s first)",
				pod.Namespace, pod.Name, why, config.ModeEnforceRedirect, config.SecurityModelVersion, config.SecurityModelDoc)
		}
		return Decision{Mode: podmode.Cooperative, Reason: r, Requested: requested}, nil
	}
	if rc := pod.Spec.RuntimeClassName; rc != nil && policy.IsVMRuntimeClass(*rc) && requested != config.ModeNone {
		// Rules in the pod netns would be programmed and verified, yet the
		// guest's packets bypass them (tc redirection below netfilter):
		// reporting such a pod as enforced would be a lie.
		why := fmt.Sprintf("runtime class %q runs the pod in a VM sandbox whose traffic bypasses netfilter in the pod's network namespace, so authbridge-cni cannot enforce egress for it", *rc)
		if requested == config.ModeAuto {
			return cooperative(podmode.ReasonVMRuntimeClass, fmt.Sprintf("egress enforcement %q (from %s): %s", config.ModeAuto, where, why))
		}
		return Decision{}, fmt.Errorf("pod %s/%s needs egress enforcement %q (from %s) but %s; redirect inside the guest instead (AuthBridge's proxy-init in the pod, which a VM sandbox permits), or use %q with allowCooperative (see %s); vmRuntimeClasses in the agent config lists these classes",
			pod.Namespace, pod.Name, requested, where, why, config.ModeAuto, config.SecurityModelDoc)
	}
	switch requested {
	case config.ModeNone:
		return cooperative(reason, fmt.Sprintf("egress enforcement %q was requested by %s", config.ModeNone, where))
	case config.ModeEnforceRedirect, config.ModeAuto:
		if state == nil {
			return Decision{}, fmt.Errorf("pod %s/%s needs egress enforcement (%q from %s): %w", pod.Namespace, pod.Name, requested, where, ErrNoNodeState)
		}
		if h, from := runtimeHandler(pod, handler, state); !policy.IsNetfilterHandler(h) {
			// Rules in the pod netns would be verified, yet a sandboxed
			// runtime's traffic may never cross them (gVisor's netstack
			// sends over AF_PACKET, a VM leaves through tc below
			// netfilter): reporting such a pod as enforced would be a lie.
			why := fmt.Sprintf("its runtime handler %q (%s) is not in netfilterRuntimeHandlers %q: a sandboxed runtime's traffic does not cross netfilter in the pod's network namespace, so authbridge-cni cannot enforce egress for it", h, from, policy.NetfilterRuntimeHandlers)
			if requested == config.ModeAuto {
				return cooperative(podmode.ReasonSandboxedRuntime, fmt.Sprintf("egress enforcement %q (from %s): %s", config.ModeAuto, where, why))
			}
			return Decision{}, fmt.Errorf("pod %s/%s needs egress enforcement %q (from %s) but %s; enforce inside the sandbox instead, use %q with allowCooperative (see %s), or, if this handler does run pods in the pod's network namespace, add it to netfilterRuntimeHandlers in the agent config",
				pod.Namespace, pod.Name, requested, where, why, config.ModeAuto, config.SecurityModelDoc)
		}
		working := state.Working(policy.Backends)
		if len(working) == 0 && requested == config.ModeAuto {
			return cooperative(podmode.ReasonAutoIncapableNode, fmt.Sprintf("egress enforcement %q (from %s) found no working redirect backend on this node (%s)", config.ModeAuto, where, ProbeSummary(*state, policy.Backends)))
		}
		if len(working) == 0 {
			return Decision{}, fmt.Errorf("pod %s/%s needs egress enforcement %q (from %s) but no redirect backend works on this node: %s; "+
				"fix the node (install nftables/iptables support in the kernel) or list a working backend in the agent config's backends",
				pod.Namespace, pod.Name, requested, where, ProbeSummary(*state, policy.Backends))
		}
		return Decision{Mode: podmode.EnforceRedirect, Reason: reason, Backends: working, Requested: requested}, nil
	}
	return Decision{}, fmt.Errorf("pod %s/%s: unhandled mode %q", pod.Namespace, pod.Name, requested)
}

// runtimeHandler is the pod's runtime handler and where it came from: its
// RuntimeClass's, else the node's default (state is not nil here).
func runtimeHandler(pod *corev1.Pod, handler string, state *nodestate.State) (string, string) {
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		return handler, fmt.Sprintf("RuntimeClass %q", *rc)
	}
	if state.DefaultRuntimeHandler == "" {
		return "", "the node's default handler, which the agent could not read from the runtime's config"
	}
	return state.DefaultRuntimeHandler, "the node's default handler"
}

// strength orders the modes: enforce-redirect always enforces, auto may
// fall back to cooperative, none never enforces.
func strength(m config.Mode) int {
	switch m {
	case config.ModeEnforceRedirect:
		return 2
	case config.ModeAuto:
		return 1
	}
	return 0
}

// requestedMode picks the pod's mode. The floor is the namespace
// ConfigMap's egressEnforcement, else the cluster default; a pod annotation
// may only strengthen it (enforce-redirect > auto > none). Weakening is the
// namespace's decision, in a ConfigMap that pod authors do not control,
// and cooperative mode also needs the cluster's allowCooperative (checked
// by Decide): an annotation cannot take a pod below its namespace.
func requestedMode(pod *corev1.Pod, ns NamespaceConfig, policy config.Policy) (config.Mode, podmode.Reason, error) {
	floor, reason, err := floorMode(pod, ns, policy)
	if err != nil {
		return "", "", err
	}
	v, ok := pod.Annotations[config.AnnotationEgressEnforcement]
	if !ok {
		return floor, reason, nil
	}
	m, err := config.ParseMode(strings.TrimSpace(v))
	if err != nil {
		return "", "", fmt.Errorf("pod %s/%s annotation %s: %w (fix the pod's annotation)", pod.Namespace, pod.Name, config.AnnotationEgressEnforcement, err)
	}
	if strength(m) < strength(floor) {
		return "", "", fmt.Errorf("pod %s/%s annotation %s: %q is weaker than %q from %s, and a pod annotation may only strengthen its namespace's mode: "+
			"remove the annotation, or have the namespace's admin set egressEnforcement: %q in ConfigMap %s/%s key %s (which pod authors do not control; see %s)",
			pod.Namespace, pod.Name, config.AnnotationEgressEnforcement, m, floor, describe(reason, pod), m, pod.Namespace, config.NamespaceConfigMap, config.NamespaceConfigMapKey, config.SecurityModelDoc)
	}
	return m, podmode.ReasonAnnotation, nil
}

// floorMode is the namespace's mode, else the cluster default.
func floorMode(pod *corev1.Pod, ns NamespaceConfig, policy config.Policy) (config.Mode, podmode.Reason, error) {
	if ns.EgressEnforcement != "" {
		m, err := config.ParseMode(string(ns.EgressEnforcement))
		if err != nil {
			return "", "", fmt.Errorf("namespace %s ConfigMap %s key %s field egressEnforcement: %w", pod.Namespace, config.NamespaceConfigMap, config.NamespaceConfigMapKey, err)
		}
		return m, podmode.ReasonNamespaceConfigMap, nil
	}
	m, err := config.ParseMode(string(policy.DefaultMode))
	if err != nil {
		return "", "", fmt.Errorf("plugin config field defaultMode: %w", err)
	}
	return m, podmode.ReasonClusterDefault, nil
}

func describe(r podmode.Reason, pod *corev1.Pod) string {
	switch r {
	case podmode.ReasonAnnotation:
		return "the pod annotation " + config.AnnotationEgressEnforcement
	case podmode.ReasonNamespaceConfigMap:
		return fmt.Sprintf("ConfigMap %s/%s", pod.Namespace, config.NamespaceConfigMap)
	default:
		return "the cluster default (defaultMode)"
	}
}

// ProbeSummary names each preferred backend's probe outcome, for errors.
func ProbeSummary(state nodestate.State, preference []string) string {
	byName := map[string]nodestate.BackendResult{}
	for _, r := range state.Results {
		byName[r.Backend] = r
	}
	var parts []string
	for _, b := range preference {
		r, ok := byName[b]
		switch {
		case !ok:
			parts = append(parts, b+": not probed")
		case r.Works:
			parts = append(parts, b+": works")
		case r.Error != "":
			parts = append(parts, b+": "+r.Error)
		default:
			parts = append(parts, b+": fails")
		}
	}
	return strings.Join(parts, "; ")
}

// ParseNamespaceConfig decodes the config.yaml key of ConfigMap
// authbridge-runtime-config. Other keys of the document belong to other
// components and are ignored; egressEnforcement, when present, must be one
// of the modes.
func ParseNamespaceConfig(namespace string, data []byte) (NamespaceConfig, error) {
	where := fmt.Sprintf("namespace %s ConfigMap %s key %s", namespace, config.NamespaceConfigMap, config.NamespaceConfigMapKey)
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return NamespaceConfig{}, fmt.Errorf("%s: not valid YAML: %w (fix the ConfigMap)", where, err)
	}
	v, ok := doc["egressEnforcement"]
	if !ok || v == nil {
		return NamespaceConfig{}, nil
	}
	s, ok := v.(string)
	if !ok {
		return NamespaceConfig{}, fmt.Errorf("%s field egressEnforcement: %v is not a string (YAML reads unquoted on/off/yes/no as booleans: quote the value); allowed values are %q, %q, %q", where, v, config.ModeEnforceRedirect, config.ModeAuto, config.ModeNone)
	}
	m, err := config.ParseMode(strings.TrimSpace(s))
	if err != nil {
		return NamespaceConfig{}, fmt.Errorf("%s field egressEnforcement: %w", where, err)
	}
	return NamespaceConfig{EgressEnforcement: m}, nil
}
