package agent

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	schedcorev1 "k8s.io/component-helpers/scheduling/corev1"
)

// Verdict is the shutdown decision: keep the plugin installed (an agent
// restart, a rollout, a reboot) or remove it (a real uninstall).
type Verdict struct {
	Uninstall bool
	// Why is logged at shutdown.
	Why string
}

// UninstallCheck decides at shutdown whether this is a real uninstall.
type UninstallCheck func(ctx context.Context) Verdict

// OwnerCheck is the production UninstallCheck: the plugin is removed only
// when the agent's DaemonSet is gone, being deleted, or no longer runs a
// pod on this node (nodeSelector, required node affinity, untolerated
// NoSchedule/NoExecute taints an operator set). Like Istio CNI's "cleanup only on real
// uninstall": every other SIGTERM (rollout, node shutdown, eviction) keeps
// the entry and binary, so no pod starts without rules in the gap.
type OwnerCheck struct {
	Client kubernetes.Interface
	// Namespace and PodName are the agent's own pod (downward API); its
	// owner reference names the DaemonSet.
	Namespace, PodName string
	// DaemonSet is used when the pod cannot be read (already deleted).
	DaemonSet string
	NodeName  string
}

// transientTaint: taints the node lifecycle puts on and takes off by
// itself (not-ready, unreachable, pressure, cordon, cloud-provider
// initialisation and shutdown) and the agent's own startup taint. A node
// carrying one is still the DaemonSet's node: a rebooting or shutting-down
// node is NotReady exactly when the agent gets SIGTERM, and uninstalling
// then would leave the rebooted node's pods without rules. Only taints an
// operator sets decide.
func transientTaint(t *corev1.Taint) bool {
	return strings.HasPrefix(t.Key, "node.kubernetes.io/") || strings.HasPrefix(t.Key, "node.cloudprovider.kubernetes.io/") ||
		t.Key == TaintAgentNotReady
}

// Check implements UninstallCheck.
func (c OwnerCheck) Check(ctx context.Context) Verdict {
	keep := func(why string) Verdict {
		return Verdict{Why: why + "; keeping the plugin installed (run node-agent uninstall on the node if the agent is really being removed)"}
	}
	// An identity the API server no longer accepts means the ServiceAccount
	// (kubectl delete -k deletes it with the DaemonSet) or the RBAC is gone.
	gone := func(err error, what string) (Verdict, bool) {
		switch {
		case apierrors.IsUnauthorized(err):
			return Verdict{Uninstall: true, Why: "the API server no longer accepts the agent's ServiceAccount token while reading " + what + " (the ServiceAccount was deleted with the manifests)"}, true
		case apierrors.IsForbidden(err):
			return Verdict{Uninstall: true, Why: "the agent's RBAC no longer allows reading " + what + " (the ClusterRole or its binding was deleted with the manifests)"}, true
		}
		return Verdict{}, false
	}
	dsName := c.DaemonSet
	if c.PodName != "" {
		pod, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, c.PodName, metav1.GetOptions{})
		if v, ok := gone(err, "its own pod"); ok {
			return v
		}
		if err == nil {
			for _, o := range pod.OwnerReferences {
				if o.Kind == "DaemonSet" && o.Controller != nil && *o.Controller {
					dsName = o.Name
				}
			}
		}
	}
	if dsName == "" || c.Namespace == "" {
		return keep("the agent's DaemonSet is unknown (set POD_NAME and POD_NAMESPACE from the downward API)")
	}
	ds, err := c.Client.AppsV1().DaemonSets(c.Namespace).Get(ctx, dsName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return Verdict{Uninstall: true, Why: fmt.Sprintf("DaemonSet %s/%s is deleted", c.Namespace, dsName)}
	case err != nil:
		if v, ok := gone(err, "DaemonSet "+c.Namespace+"/"+dsName); ok {
			return v
		}
		return keep(fmt.Sprintf("cannot read DaemonSet %s/%s: %v", c.Namespace, dsName, err))
	case ds.DeletionTimestamp != nil:
		return Verdict{Uninstall: true, Why: fmt.Sprintf("DaemonSet %s/%s is being deleted", c.Namespace, dsName)}
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return keep(fmt.Sprintf("Node %s is not in the API server", c.NodeName))
	case err != nil:
		if v, ok := gone(err, "Node "+c.NodeName); ok {
			return v
		}
		return keep(fmt.Sprintf("cannot read Node %s: %v", c.NodeName, err))
	}
	return selects(ds, node)
}

// selects: does the DaemonSet still run a pod on node?
func selects(ds *appsv1.DaemonSet, node *corev1.Node) Verdict {
	spec := ds.Spec.Template.Spec
	where := fmt.Sprintf("DaemonSet %s/%s", ds.Namespace, ds.Name)
	ok, err := nodeaffinity.NewRequiredNodeAffinity(spec.NodeSelector, spec.Affinity).Match(node)
	if err != nil {
		return Verdict{Why: fmt.Sprintf("%s: cannot evaluate its node affinity (%v); keeping the plugin installed", where, err)}
	}
	if !ok {
		return Verdict{Uninstall: true, Why: fmt.Sprintf("%s no longer selects node %s (nodeSelector or node affinity)", where, node.Name)}
	}
	taint, untolerated := schedcorev1.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, spec.Tolerations, func(t *corev1.Taint) bool {
		return (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) && !transientTaint(t)
	}, false)
	if untolerated {
		return Verdict{Uninstall: true, Why: fmt.Sprintf("%s does not tolerate taint %s=%s:%s of node %s", where, taint.Key, taint.Value, taint.Effect, node.Name)}
	}
	return Verdict{Why: fmt.Sprintf("%s still selects node %s (restart or upgrade); keeping the plugin installed", where, node.Name)}
}
