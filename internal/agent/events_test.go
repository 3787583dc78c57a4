package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
)

// Real datagrams on the real socket become metrics (scraped over HTTP) and
// Pod Events (in the real API server, matched by the pod's UID as kubectl
// describe does).
func TestPluginEventsBecomeMetricsAndPodEvents(t *testing.T) {
	cs := admin(t)
	node, ns := "node-events", "ev-ns"
	createNode(t, cs, node)
	createNamespace(t, cs, ns)
	coop := createPod(t, cs, ns, "coop", node, true, nil)
	auto := createPod(t, cs, ns, "auto", node, true, nil)
	failed := createPod(t, cs, ns, "failed", node, true, nil)

	h := newAgent(t, cs, node, testConfig(t), nil)
	h.start(t)
	h.waitReady(t)
	sock := h.a.SocketPath()
	send := func(ev pluginevents.Event) {
		t.Helper()
		if err := pluginevents.Send(sock, ev); err != nil {
			t.Fatalf("send plugin event: %v", err)
		}
	}
	send(pluginevents.Event{Op: "ADD", Result: "success", Mode: "enforce-redirect", Backend: "nftables", Namespace: ns, Pod: "enf", Seconds: 0.012})
	send(pluginevents.Event{Op: "ADD", Result: "success", Mode: "enforce-redirect", Backend: "nftables", Namespace: ns, Pod: "enf2", Seconds: 0.020})
	send(pluginevents.Event{Op: "ADD", Result: "success", Mode: "cooperative", Reason: "annotation", Namespace: ns, Pod: "coop", Seconds: 0.004})
	send(pluginevents.Event{Op: "ADD", Result: "success", Mode: "cooperative", Reason: "auto-incapable-node", Namespace: ns, Pod: "auto", Seconds: 0.005})
	send(pluginevents.Event{Op: "ADD", Result: "failure", Mode: "enforce-redirect", Backend: "nftables", Namespace: ns, Pod: "failed", Message: "no working redirect backend", Seconds: 0.1})
	send(pluginevents.Event{Op: "ADD", Result: "success", Mode: "skipped", Namespace: ns, Pod: "plain", Seconds: 0.001})
	send(pluginevents.Event{Op: "DEL", Result: "success", Namespace: ns, Pod: "enf"})
	send(pluginevents.Event{Op: "CHECK", Result: "failure", Namespace: ns, Pod: "enf2"})

	want := map[string]float64{
		metrics.Key("authbridge_cni_operations_total", map[string]string{"op": "ADD", "result": "success"}):   5,
		metrics.Key("authbridge_cni_operations_total", map[string]string{"op": "ADD", "result": "failure"}):   1,
		metrics.Key("authbridge_cni_operations_total", map[string]string{"op": "DEL", "result": "success"}):   1,
		metrics.Key("authbridge_cni_operations_total", map[string]string{"op": "CHECK", "result": "failure"}): 1,
		metrics.Key("authbridge_cni_pods_total", map[string]string{"mode": "enforce-redirect"}):               2,
		metrics.Key("authbridge_cni_pods_total", map[string]string{"mode": "cooperative"}):                    2,
		metrics.Key("authbridge_cni_pods_total", map[string]string{"mode": "skipped"}):                        1,
		metrics.Key("authbridge_cooperative_pods_total", map[string]string{"reason": "annotation"}):           1,
		metrics.Key("authbridge_cooperative_pods_total", map[string]string{"reason": "auto-incapable-node"}):  1,
		"authbridge_cni_add_duration_seconds_count":                                                           6,
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		s := h.scrape(t)
		for k, v := range want {
			if s[k] != v {
				return false, k + " not yet at expected value"
			}
		}
		return true, ""
	})
	if sum := h.scrape(t)["authbridge_cni_add_duration_seconds_sum"]; sum < 0.141 || sum > 0.143 {
		t.Errorf("cni_add_duration_seconds_sum = %v, want 0.142", sum)
	}

	podEvent := func(p *corev1.Pod, reason string) corev1.Event {
		var got corev1.Event
		waitFor(t, 10*time.Second, func() (bool, string) {
			evs := eventsWithReason(events(t, cs, ns, "Pod", p.Name), reason)
			if len(evs) == 0 {
				return false, "no " + reason + " event for " + p.Name
			}
			got = evs[0]
			return true, ""
		})
		if got.InvolvedObject.UID != p.UID {
			t.Errorf("%s event on %s has UID %q, want %q (kubectl describe would not show it)", reason, p.Name, got.InvolvedObject.UID, p.UID)
		}
		if got.Source.Host != node || got.Source.Component != EventComponent {
			t.Errorf("event source %+v", got.Source)
		}
		return got
	}
	e := podEvent(coop, ReasonCooperativeEgress)
	if e.Type != corev1.EventTypeNormal || !strings.Contains(e.Message, "cooperative") || !strings.Contains(e.Message, "reason annotation") {
		t.Errorf("cooperative event: %s %s", e.Type, e.Message)
	}
	e = podEvent(auto, ReasonCooperativeEgress)
	if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "auto-incapable-node") {
		t.Errorf("auto cooperative event: %s %s", e.Type, e.Message)
	}
	e = podEvent(failed, ReasonEnforcementFailed)
	if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "no working redirect backend") {
		t.Errorf("enforcement failed event: %s %s", e.Type, e.Message)
	}
	// Enforced and skipped pods get no events.
	for _, name := range []string{"enf", "enf2", "plain"} {
		if evs := events(t, cs, ns, "Pod", name); len(evs) != 0 {
			t.Errorf("unexpected events for %s: %s", name, describeEvents(evs))
		}
	}
}

// Pods with the sidecar that got their network before the agent was ready
// and have no plugin state are reported (Event + gauge); with repairPods,
// controller-owned ones are deleted. (Pods without the
// PodReadyToStartContainers condition are aged by creationTimestamp.)
func TestPodsWithoutRules(t *testing.T) {
	cs := admin(t)
	node, ns := "node-norules", "norules-ns"
	createNode(t, cs, node)
	createNamespace(t, cs, ns)
	isController := true
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "0c7e8b1e-0000-4000-8000-000000000001", Controller: &isController}
	missing := createPod(t, cs, ns, "missing", node, true, owner)
	orphan := createPod(t, cs, ns, "orphan", node, true, nil)
	byUID := createPod(t, cs, ns, "has-state-uid", node, true, nil)
	createPod(t, cs, ns, "has-state-name", node, true, nil)
	createPod(t, cs, ns, "no-sidecar", node, false, nil)
	createPod(t, cs, ns, "other-node", "elsewhere", true, nil)
	createPod(t, cs, ns, "recreated", node, true, nil)
	createHostNetworkPod(t, cs, ns, "hostnet", node)

	cfg := testConfig(t)
	cfg.RepairPods = true
	dir := filepath.Join(cfg.StateDir, containerstate.Dir)
	os.MkdirAll(dir, 0o700)
	write := func(id string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, id+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The plugin's files: keyed by sandbox ID, matched by podUID or name.
	write("aaaa", map[string]any{"containerID": "aaaa", "podUID": string(byUID.UID), "namespace": ns, "pod": "renamed?", "mode": "enforce-redirect"})
	write("bbbb", map[string]any{"containerID": "bbbb", "namespace": ns, "pod": "has-state-name", "mode": "cooperative"})
	// A record left by a deleted pod of the same name (another UID) does
	// not hide the recreated pod, which has no rules.
	write("cccc", map[string]any{"containerID": "cccc", "podUID": "0c7e8b1e-0000-4000-8000-0000000000ff", "namespace": ns, "pod": "recreated", "mode": "enforce-redirect"})

	h := newAgent(t, cs, node, cfg, func(o *Options) { o.PodsWithoutRulesGrace = time.Millisecond })
	h.start(t)
	h.waitReady(t)

	// The gauge is set first, then the Events are written and the repair
	// done: wait for the whole check to have run before asserting on it.
	waitFor(t, 10*time.Second, func() (bool, string) {
		m := h.scrape(t)
		if m["authbridge_pods_without_rules"] != 3 || m["authbridge_pods_repaired_total"] != 1 || m["authbridge_hostnetwork_pods"] != 1 {
			return false, "pods_without_rules gauge 3, hostnetwork_pods 1 and pods_repaired_total 1"
		}
		if len(eventsWithReason(events(t, cs, ns, "Pod", "hostnet"), ReasonNotEnforceable)) == 0 {
			return false, "hostnet " + ReasonNotEnforceable + " event"
		}
		for _, p := range []string{"missing", "orphan", "recreated"} {
			if len(eventsWithReason(events(t, cs, ns, "Pod", p), ReasonEgressRulesMissing)) == 0 {
				return false, p + " " + ReasonEgressRulesMissing + " event"
			}
		}
		return true, ""
	})
	for _, p := range []string{"missing", "orphan", "recreated"} {
		if n := len(eventsWithReason(events(t, cs, ns, "Pod", p), ReasonEgressRulesMissing)); n != 1 {
			t.Errorf("%s: want 1 %s event, got %d", p, ReasonEgressRulesMissing, n)
		}
	}
	for _, p := range []string{"has-state-uid", "has-state-name", "no-sidecar", "other-node"} {
		if evs := events(t, cs, ns, "Pod", p); len(evs) != 0 {
			t.Errorf("%s: unexpected events %s", p, describeEvents(evs))
		}
	}
	// Repair deleted the controller-owned pod (graceful: no kubelet runs,
	// so it stays with a deletionTimestamp) and left the orphan alone.
	got, err := cs.CoreV1().Pods(ns).Get(context.Background(), missing.Name, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp == nil {
		t.Errorf("repairPods did not delete %s", missing.Name)
	}
	got, err = cs.CoreV1().Pods(ns).Get(context.Background(), orphan.Name, metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp != nil {
		t.Errorf("repairPods deleted a pod without a controller: %v", err)
	}
	if v := h.scrape(t)["authbridge_pods_repaired_total"]; v != 1 {
		t.Errorf("pods_repaired_total = %v", v)
	}
	// A second check does not repeat the events.
	h.a.CheckPodsWithoutRules(context.Background())
	if n := len(eventsWithReason(events(t, cs, ns, "Pod", "orphan"), ReasonEgressRulesMissing)); n != 1 {
		t.Errorf("orphan: event repeated (%d)", n)
	}
	if n := len(eventsWithReason(events(t, cs, ns, "Pod", "hostnet"), ReasonNotEnforceable)); n != 1 {
		t.Errorf("hostnet: %d %s events, want 1", n, ReasonNotEnforceable)
	}
	if n := len(eventsWithReason(events(t, cs, ns, "Pod", "hostnet"), ReasonEgressRulesMissing)); n != 0 {
		t.Errorf("hostnet: %d %s events; a hostNetwork pod is not a pod without rules to repair", n, ReasonEgressRulesMissing)
	}
}
