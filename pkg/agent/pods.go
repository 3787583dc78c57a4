package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// ContainersDir is the plugin's per-sandbox state directory inside the
// state dir: one containers/<sandboxID>.json per successful ADD.
const ContainersDir = "containers"

// sandboxState is the part of the plugin's container state file the agent
// reads. The sandbox ID is not in the pod status, so a file is matched to
// a pod by podUID when the plugin records it, else by namespace and name.
type sandboxState struct {
	PodUID    string `json:"podUID,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Mode      string `json:"mode"`
}

// sandboxIndex reads every container state file.
func sandboxIndex(stateDir string) (byUID, byName map[string]sandboxState, err error) {
	byUID, byName = map[string]sandboxState{}, map[string]sandboxState{}
	dir := filepath.Join(stateDir, ContainersDir)
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return byUID, byName, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read plugin state dir %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed by a concurrent DEL
		}
		var s sandboxState
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		if s.PodUID != "" {
			byUID[s.PodUID] = s
		}
		if s.Namespace != "" && s.Pod != "" {
			byName[s.Namespace+"/"+s.Pod] = s
		}
	}
	return byUID, byName, nil
}

// hasSidecar reports whether the pod carries an AuthBridge sidecar (a
// container or a native sidecar init container with a configured name).
func hasSidecar(p *corev1.Pod, names []string) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			for _, n := range names {
				if c.Name == n {
					return true
				}
			}
		}
	}
	return false
}

// PodsWithoutRules lists this node's AuthBridge pods that got their network
// before the agent was ready and have no plugin state: the plugin never saw
// their ADD, so no redirect rules exist in their netns.
func (a *Agent) PodsWithoutRules(ctx context.Context, readyAt time.Time) ([]corev1.Pod, error) {
	list, err := a.o.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", a.o.NodeName).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list pods on node %s: %w", a.o.NodeName, err)
	}
	byUID, byName, err := sandboxIndex(a.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		switch {
		case p.Spec.HostNetwork, // no CNI ADD at all
			p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending,
			p.Status.PodIP == "", // network not set up yet: its ADD is still to come
			p.DeletionTimestamp != nil,
			!p.CreationTimestamp.Time.Before(readyAt),
			!hasSidecar(p, a.cfg.SidecarContainerNames):
			continue
		}
		if _, ok := byUID[string(p.UID)]; ok {
			continue
		}
		if _, ok := byName[p.Namespace+"/"+p.Name]; ok {
			continue
		}
		out = append(out, *p)
	}
	return out, nil
}

// CheckPodsWithoutRules updates authbridge_pods_without_rules, emits an
// Event on each such pod once, and with repairPods deletes controller-owned
// ones so they are recreated with rules.
func (a *Agent) CheckPodsWithoutRules(ctx context.Context) {
	a.mu.Lock()
	readyAt := a.readyAt
	a.mu.Unlock()
	if readyAt.IsZero() {
		return
	}
	pods, err := a.PodsWithoutRules(ctx, readyAt)
	if err != nil {
		a.log.Warn("cannot check for pods without rules", "err", err)
		return
	}
	a.metrics.PodsWithoutRules.Set(float64(len(pods)))
	for i := range pods {
		p := &pods[i]
		ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion}
		a.mu.Lock()
		seen := a.reported[string(p.UID)]
		a.reported[string(p.UID)] = true
		a.mu.Unlock()
		if !seen {
			a.log.Warn("AuthBridge pod started before the plugin was installed and has no egress redirect rules", "pod", p.Namespace+"/"+p.Name)
			a.emit(ctx, ref, corev1.EventTypeWarning, ReasonEgressRulesMissing,
				"pod started before the authbridge node agent installed the CNI plugin on this node: it has no egress redirect rules; delete it so its controller recreates it with rules (or enable repairPods)")
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
