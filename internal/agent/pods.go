package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// sandboxIndex indexes the container state files by pod UID, and those
// without a UID (records of older plugins) by name.
func sandboxIndex(stateDir string) (byUID, byName map[string]containerstate.Record, err error) {
	states, err := containerstate.ReadAll(stateDir)
	if err != nil {
		return nil, nil, err
	}
	byUID, byName = map[string]containerstate.Record{}, map[string]containerstate.Record{}
	for _, s := range states {
		if s.PodUID != "" {
			byUID[s.PodUID] = s
		}
		// By name only for records without a UID (plugins before podUID
		// was recorded): a record of another UID is of a deleted pod, and
		// must not hide a recreated one of the same name that has no rules.
		if s.PodUID == "" && s.Namespace != "" && s.Pod != "" {
			byName[s.Namespace+"/"+s.Pod] = s
		}
	}
	return byUID, byName, nil
}

// sandboxCreated is when the pod's current sandbox got its network: the
// PodReadyToStartContainers condition's transition time (set by the
// kubelet once the sandbox and its network exist), else the pod's
// creationTimestamp (kubelets before the condition existed).
func sandboxCreated(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	return p.CreationTimestamp.Time
}

// PodsWithoutRules lists this node's running AuthBridge pods whose sandbox
// got its network more than the grace period before now and that have no
// plugin state: the plugin never saw their ADD (they started before the
// agent installed it, or while the primary CNI's rewrite had dropped the
// entry), so no redirect rules exist in their netns. The plugin writes the
// state file before its ADD returns, so the grace only absorbs a pod
// listed in the instant between.
func (a *Agent) PodsWithoutRules(ctx context.Context, now time.Time) ([]corev1.Pod, error) {
	without, _, err := a.podsNotEnforced(ctx, now)
	return without, err
}

// podsNotEnforced lists this node's AuthBridge pods without rules (see
// PodsWithoutRules) and those with hostNetwork: true, which get no CNI
// ADD at all, so no rules can ever exist for them.
func (a *Agent) podsNotEnforced(ctx context.Context, now time.Time) (without, hostNetwork []corev1.Pod, err error) {
	items, err := a.listNodePods(ctx)
	if err != nil {
		return nil, nil, err
	}
	byUID, byName, err := sandboxIndex(a.cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	for i := range items {
		p := &items[i]
		switch {
		case p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending,
			p.DeletionTimestamp != nil,
			!podinfo.IsAuthBridgePod(p, a.cfg.SidecarContainerNames):
			continue
		case p.Spec.HostNetwork: // no CNI ADD at all
			hostNetwork = append(hostNetwork, *p)
			continue
		case p.Status.PodIP == "", // network not set up yet: its ADD is still to come
			now.Sub(sandboxCreated(p)) < a.o.PodsWithoutRulesGrace:
			continue
		}
		if a.cfg.IsExcludedNamespace(p.Namespace) {
			// Passed through by design (excludeNamespaces): not a pod that
			// lost its rules, but a weakening the admin must know about.
			a.warnExcludedAuthBridgePod(p)
			continue
		}
		if _, ok := byUID[string(p.UID)]; ok {
			continue
		}
		if _, ok := byName[p.Namespace+"/"+p.Name]; ok {
			continue
		}
		without = append(without, *p)
	}
	return without, hostNetwork, nil
}

// CheckPodsWithoutRules emits an Event on each such pod once, repairs it
// in place (RepairInPlace: the plugin's rules, programmed from the host),
// and only when that fails and repairPods is on deletes a controller-owned
// pod so it is recreated with rules; authbridge_pods_without_rules counts
// the pods still without rules. It does nothing before the agent is ready
// (the plugin is not installed yet, and the node not probed).
func (a *Agent) CheckPodsWithoutRules(ctx context.Context) {
	a.mu.Lock()
	ready := a.ready
	a.mu.Unlock()
	if !ready {
		return
	}
	pods, hostNet, err := a.podsNotEnforced(ctx, time.Now())
	if err != nil {
		a.log.Warn("cannot check for pods without rules", "err", err)
		return
	}
	a.metrics.HostNetworkPods.Set(float64(len(hostNet)))
	// Forget pods no longer without rules (deleted, or given a new
	// sandbox the plugin saw), so the map does not grow forever.
	current := make(map[string]bool, len(pods)+len(hostNet))
	for i := range pods {
		current[string(pods[i].UID)] = true
	}
	for i := range hostNet {
		current[hostNetKey(hostNet[i].UID)] = true
	}
	a.mu.Lock()
	for uid := range a.reported {
		if !current[uid] {
			delete(a.reported, uid)
		}
	}
	a.mu.Unlock()
	for i := range hostNet {
		p := &hostNet[i]
		a.mu.Lock()
		seen := a.reported[hostNetKey(p.UID)]
		a.reported[hostNetKey(p.UID)] = true
		a.mu.Unlock()
		if seen {
			continue
		}
		a.log.Warn("AuthBridge pod uses the host network: it gets no CNI ADD, so its egress is not enforced", "pod", p.Namespace+"/"+p.Name)
		ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion}
		a.emit(ctx, ref, corev1.EventTypeWarning, ReasonNotEnforceable,
			"pod has hostNetwork: true: the runtime runs no CNI plugin for it, so authbridge-cni cannot program egress redirect rules and nothing makes its traffic pass the proxy; run it without hostNetwork (the admission policy in manifests/policies refuses such pods)")
	}
	without := len(pods)
	defer func() { a.metrics.PodsWithoutRules.Set(float64(without)) }()
	for i := range pods {
		p := &pods[i]
		ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion}
		a.mu.Lock()
		seen := a.reported[string(p.UID)]
		a.reported[string(p.UID)] = true
		a.mu.Unlock()
		if !seen {
			a.log.Warn("AuthBridge pod has no egress redirect rules: its network was set up while the authbridge-cni plugin was not in the chain", "pod", p.Namespace+"/"+p.Name)
			a.emit(ctx, ref, corev1.EventTypeWarning, ReasonEgressRulesMissing,
				"pod got its network while the authbridge-cni plugin was not in this node's CNI chain (before the node agent installed it, or while its entry was missing): it has no egress redirect rules; the node agent programs them in place")
			a.setCondition(ctx, p, podcondition.NotEnforced(podcondition.ReasonRulesMissing, "the pod got its network without the authbridge-cni plugin: no egress redirect rules"))
		}
		if a.repairPod(ctx, p, !seen) {
			without--
			continue
		}
		if !a.cfg.RepairPods {
			continue
		}
		if metav1.GetControllerOf(p) == nil {
			if !seen {
				a.log.Warn("repairPods: not deleting a pod without a controller (it would not come back)", "pod", p.Namespace+"/"+p.Name)
			}
			continue
		}
		uid := p.UID
		err := a.o.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil {
			a.log.Warn("repairPods: cannot delete pod", "pod", p.Namespace+"/"+p.Name, "err", err)
			continue
		}
		a.metrics.PodsRepaired.Inc()
		a.log.Info("repairPods: deleted pod without rules so its controller recreates it", "pod", p.Namespace+"/"+p.Name)
		a.emit(ctx, ref, corev1.EventTypeNormal, ReasonPodRepaired, "deleted by the authbridge node agent (repairPods): it had no egress redirect rules; its controller recreates it with rules")
	}
}

// PodsPerMode counts the pods with plugin state per mode (enforce-redirect,
// cooperative, skipped), one per pod (by podUID, else namespace/name, else
// sandbox) however many sandbox files it has.
func PodsPerMode(stateDir string) (map[podmode.Mode]int, error) {
	states, err := containerstate.ReadAll(stateDir)
	if err != nil {
		return nil, err
	}
	modes := map[string]podmode.Mode{} // pod key -> mode
	for file, s := range states {
		key := "sandbox/" + file
		switch {
		case s.PodUID != "":
			key = "uid/" + s.PodUID
		case s.Namespace != "" && s.Pod != "":
			key = "name/" + s.Namespace + "/" + s.Pod
		}
		modes[key] = s.Mode
	}
	out := map[podmode.Mode]int{}
	for _, m := range modes {
		out[m]++
	}
	return out, nil
}

// UpdatePodsGauge recomputes authbridge_pods{mode} from the plugin's state
// files (periodically and after each plugin event).
func (a *Agent) UpdatePodsGauge() {
	counts, err := PodsPerMode(a.cfg.StateDir)
	if err != nil {
		a.log.Warn("cannot count pods per mode", "err", err)
		return
	}
	a.metrics.SetPodsPerMode(counts)
}

// warnExcludedAuthBridgePod: excludeNamespaces names a namespace that runs
// AuthBridge pods, which therefore get no rules. Logged at WARN once per
// namespace and counted as the weakening excludeNamespaces in
// authbridge_config_weakenings.
func (a *Agent) warnExcludedAuthBridgePod(p *corev1.Pod) {
	a.mu.Lock()
	seen := a.excludedWarned[p.Namespace]
	a.excludedWarned[p.Namespace] = true
	a.mu.Unlock()
	a.metrics.ConfigWeakenings.WithLabelValues("excludeNamespaces").Set(1)
	if !seen {
		a.log.Warn("configuration weakens egress enforcement: excludeNamespaces names a namespace with AuthBridge pods, which start without redirect rules",
			"setting", "excludeNamespaces", "namespace", p.Namespace, "pod", p.Name, "see", "docs/operations.md")
	}
}

// hostNetKey keys a hostNetwork pod in Agent.reported, apart from the pods
// without rules.
func hostNetKey(uid types.UID) string { return "hostnetwork/" + string(uid) }
