package agent

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// TaintAgentNotReady is the opt-in startup taint (Cilium's agent-not-ready
// pattern): the admin registers the node pool's nodes with it
// (kubelet --register-with-taints=authbridge.kagenti.io/agent-not-ready=:NoSchedule),
// so nothing schedules there before the plugin is installed, the node
// probed and labelled. The agent removes it once, when it first becomes
// ready, and never adds it back: a restarting agent leaves a node whose
// plugin stays installed and whose pods keep their rules.
const TaintAgentNotReady = "authbridge.kagenti.io/agent-not-ready"

// removeStartupTaint removes TaintAgentNotReady from the Node if present,
// retrying with backoff until it succeeds or ctx ends.
func (a *Agent) removeStartupTaint(ctx context.Context) {
	wait := time.Second
	for {
		removed, err := a.dropTaint(ctx)
		if err == nil {
			if removed {
				a.log.Info("removed the startup taint; pods may schedule here", "taint", TaintAgentNotReady)
			}
			return
		}
		a.metrics.NodeUpdateErrors.Inc()
		a.log.Warn("cannot remove the startup taint; retrying", "taint", TaintAgentNotReady, "err", err, "retryIn", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = backoff(wait, a.o.APIRetryMax)
	}
}

func (a *Agent) dropTaint(ctx context.Context) (removed bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		removed = false
		node, err := a.o.Client.CoreV1().Nodes().Get(ctx, a.o.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var keep []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key == TaintAgentNotReady {
				removed = true
				continue
			}
			keep = append(keep, t)
		}
		if !removed {
			return nil
		}
		if keep == nil {
			keep = []corev1.Taint{}
		}
		// A merge patch carrying the resourceVersion is refused with
		// Conflict if the taints changed meanwhile (the RBAC has patch,
		// not update, on nodes).
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": node.ResourceVersion},
			"spec":     map[string]any{"taints": keep},
		})
		if err != nil {
			return err
		}
		_, err = a.o.Client.CoreV1().Nodes().Patch(ctx, a.o.NodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: EventComponent})
		return err
	})
	return removed, err
}
