// Package podcondition keeps the pod condition
// authbridge.kagenti.io/egress-enforced on AuthBridge pods: True once the
// node agent has verified the pod's redirect rules, False with the reason
// when they are missing, drifted, being repaired, or the pod is cooperative
// by choice. A pod that lists the type in spec.readinessGates is not Ready
// (gets no Service traffic) while it is not True.
//
// Writes go through the pods/status subresource and only on a transition
// (status or reason changes): a node with 110 pods verified every 30 s would
// otherwise write several times a second for nothing, on every node.
package podcondition

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Type is the condition type, also the readiness gate's conditionType.
const Type corev1.PodConditionType = "authbridge.kagenti.io/egress-enforced"

// Reasons. Each False reason pairs with the Event of the same transition.
const (
	// ReasonVerified: rules read back from the kernel match (True).
	ReasonVerified = "Verified"
	// ReasonRulesMissing: no rules at all (EgressRulesMissing).
	ReasonRulesMissing = "RulesMissing"
	// ReasonRulesDrifted: rules differ from what was programmed
	// (EgressRulesDrifted); re-applied at once.
	ReasonRulesDrifted = "RulesDrifted"
	// ReasonRepairing: the agent is programming rules in place.
	ReasonRepairing = "Repairing"
	// ReasonRepairFailed: programming in place failed (EgressRepairFailed).
	ReasonRepairFailed = "RepairFailed"
	// ReasonCooperative: cooperative by configuration (HTTP_PROXY only):
	// visible as such, not as broken. Status False: nothing is enforced.
	ReasonCooperative = "Cooperative"
)

// State is what the condition should say.
type State struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// Verified is the True state for rules read back from the kernel.
func Verified(backend string, families []string) State {
	return State{Status: corev1.ConditionTrue, Reason: ReasonVerified,
		Message: fmt.Sprintf("egress redirect rules verified by the node agent (backend %s, families %v)", backend, families)}
}

// NotEnforced is a False state with a reason and message.
func NotEnforced(reason, message string) State {
	return State{Status: corev1.ConditionFalse, Reason: reason, Message: message}
}

// Current returns the pod's condition, or nil.
func Current(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == Type {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// NeedsUpdate reports whether writing s would change the pod's condition
// (status, reason or message).
func NeedsUpdate(p *corev1.Pod, s State) bool {
	c := Current(p)
	return c == nil || c.Status != s.Status || c.Reason != s.Reason || c.Message != s.Message
}

// Set writes s as the pod's condition if it differs from what the pod
// carries; lastTransitionTime moves only when the status changes. It
// returns whether it wrote. The patch is a strategic merge on
// status.conditions (merged by type), so other conditions are untouched,
// and it carries the pod UID as a precondition: a pod recreated under the
// same name is never marked with its predecessor's state.
func Set(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, s State, now time.Time) (bool, error) {
	if !NeedsUpdate(p, s) {
		return false, nil
	}
	ltt := metav1.NewTime(now.UTC().Truncate(time.Second))
	if c := Current(p); c != nil && c.Status == s.Status && !c.LastTransitionTime.IsZero() {
		ltt = c.LastTransitionTime
	}
	patch := map[string]any{
		"metadata": map[string]any{"uid": p.UID},
		"status": map[string]any{"conditions": []any{map[string]any{
			"type": Type, "status": s.Status, "reason": s.Reason, "message": s.Message,
			"lastTransitionTime": ltt, "lastProbeTime": metav1.NewTime(now.UTC().Truncate(time.Second)),
		}}},
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return false, err
	}
	if _, err := cs.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, b, metav1.PatchOptions{FieldManager: "authbridge-node-agent"}, "status"); err != nil {
		return false, fmt.Errorf("set condition %s=%s (%s) on pod %s/%s: %w", Type, s.Status, s.Reason, p.Namespace, p.Name, err)
	}
	return true, nil
}
