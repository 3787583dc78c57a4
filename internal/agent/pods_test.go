package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
)

// setSandboxCreated writes the PodReadyToStartContainers condition a
// kubelet sets once the pod's sandbox has its network.
func setSandboxCreated(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, at time.Time) *corev1.Pod {
	t.Helper()
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at),
	})
	p, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSandboxState(t *testing.T, stateDir, id string, v map[string]any) {
	t.Helper()
	dir := filepath.Join(stateDir, containerstate.Dir)
	os.MkdirAll(dir, 0o700)
	b, _ := json.Marshal(v)
	if err := os.WriteFile(filepath.Join(dir, id+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A pod whose sandbox got its network after the agent became ready, while
// the entry was missing (the primary CNI rewrote its conflist), is reported
// once its sandbox is older than the grace period; a young sandbox and one
// with plugin state are not. Deleted pods leave the reported set.
func TestPodsWithoutRulesAfterReadiness(t *testing.T) {
	cs := admin(t)
	node, ns := "node-gap", "gap-ns"
	createNode(t, cs, node)
	createNamespace(t, cs, ns)
	cfg := testConfig(t)
	h := newAgent(t, cs, node, cfg, func(o *Options) {
		o.PodCheckInterval = 200 * time.Millisecond
		o.PodsWithoutRulesGrace = time.Minute
	})
	h.start(t)
	h.waitReady(t)

	// All created after readiness.
	gap := setSandboxCreated(t, cs, createPod(t, cs, ns, "gap", node, true, nil), time.Now().Add(-2*time.Minute))
	setSandboxCreated(t, cs, createPod(t, cs, ns, "young", node, true, nil), time.Now())
	withState := setSandboxCreated(t, cs, createPod(t, cs, ns, "with-state", node, true, nil), time.Now().Add(-2*time.Minute))
	writeSandboxState(t, cfg.StateDir, "cccc", map[string]any{"podUID": string(withState.UID), "namespace": ns, "pod": "with-state", "mode": "enforce-redirect"})

	waitFor(t, 10*time.Second, func() (bool, string) {
		n := len(eventsWithReason(events(t, cs, ns, "Pod", "gap"), ReasonEgressRulesMissing))
		return n == 1 && h.scrape(t)["authbridge_pods_without_rules"] == 1, fmt.Sprintf("gap pod reported: %d events", n)
	})
	for _, p := range []string{"young", "with-state"} {
		if evs := events(t, cs, ns, "Pod", p); len(evs) != 0 {
			t.Errorf("%s: unexpected events %s", p, describeEvents(evs))
		}
	}
	h.a.mu.Lock()
	reported := h.a.reported[string(gap.UID)]
	h.a.mu.Unlock()
	if !reported {
		t.Fatal("gap pod not in the reported set")
	}

	// The pod goes away: the gauge drops and its UID is forgotten.
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), "gap", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		h.a.mu.Lock()
		n := len(h.a.reported)
		h.a.mu.Unlock()
		return n == 0 && h.scrape(t)["authbridge_pods_without_rules"] == 0, fmt.Sprintf("reported set has %d entries", n)
	})
	// Still reported only once.
	if n := len(eventsWithReason(events(t, cs, ns, "Pod", "gap"), ReasonEgressRulesMissing)); n != 1 {
		t.Errorf("gap pod: %d events", n)
	}
}

// authbridge_pods{mode} follows the plugin's state files: computed at start,
// recomputed on plugin events; several sandbox files of one pod count once.
func TestPodsPerModeGauge(t *testing.T) {
	cs := admin(t)
	node := "node-podsgauge"
	createNode(t, cs, node)
	cfg := testConfig(t)
	writeSandboxState(t, cfg.StateDir, "s1", map[string]any{"podUID": "u1", "namespace": "a", "pod": "p1", "mode": "enforce-redirect"})
	writeSandboxState(t, cfg.StateDir, "s1-old", map[string]any{"podUID": "u1", "namespace": "a", "pod": "p1", "mode": "enforce-redirect"})
	writeSandboxState(t, cfg.StateDir, "s2", map[string]any{"podUID": "u2", "namespace": "a", "pod": "p2", "mode": "cooperative"})
	writeSandboxState(t, cfg.StateDir, "s3", map[string]any{"namespace": "a", "pod": "p3", "mode": "skip"})
	h := newAgent(t, cs, node, cfg, func(o *Options) { o.PodCheckInterval = time.Hour })
	h.start(t)
	h.waitReady(t)
	want := func(enf, coop, skipped float64) func() (bool, string) {
		return func() (bool, string) {
			s := h.scrape(t)
			g := func(m string) float64 { v, _ := s.Get("authbridge_pods", map[string]string{"mode": m}); return v }
			return g("enforce-redirect") == enf && g("cooperative") == coop && g("skipped") == skipped,
				fmt.Sprintf("pods gauge enforce %v cooperative %v skipped %v", g("enforce-redirect"), g("cooperative"), g("skipped"))
		}
	}
	waitFor(t, 10*time.Second, want(1, 1, 1))

	writeSandboxState(t, cfg.StateDir, "s4", map[string]any{"podUID": "u4", "namespace": "a", "pod": "p4", "mode": "enforce-redirect"})
	if err := pluginevents.Send(h.a.SocketPath(), pluginevents.Event{Op: "ADD", Result: "success", Mode: "enforce-redirect", Namespace: "a", Pod: "p4"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, want(2, 1, 1))

	os.Remove(filepath.Join(cfg.StateDir, containerstate.Dir, "s2.json"))
	if err := pluginevents.Send(h.a.SocketPath(), pluginevents.Event{Op: "DEL", Result: "success"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, want(2, 0, 1))
	// The counter of ADDs is still there next to the gauge.
	if v, _ := h.scrape(t).Get("authbridge_cni_pods_total", map[string]string{"mode": "enforce-redirect"}); v != 1 {
		t.Errorf("cni_pods_total{enforce-redirect} = %v", v)
	}
}

// podListCounter counts the agent's LIST requests for pods, on the client
// side of a real API server.
type podListCounter struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	lists int
}

func (c *podListCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods") && r.URL.Query().Get("watch") != "true" {
		c.mu.Lock()
		c.lists++
		c.mu.Unlock()
	}
	return c.rt.RoundTrip(r)
}

func (c *podListCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists
}

// The periodic passes (pods without rules every PodCheckInterval, verify
// every verifyInterval) read this node's pods from the agent's informer
// once it has synced: with both at 200 ms, a pod without rules is found
// and no further pod LIST reaches the API server (a 500-node cluster
// would otherwise list every 30 s per node per pass).
func TestPeriodicPassesReadPodsFromCache(t *testing.T) {
	cfg0 := apiserver.Shared(t).AdminConfig()
	counter := &podListCounter{}
	cfg0.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.rt = rt; return counter })
	cs, err := kubernetes.NewForConfig(cfg0)
	if err != nil {
		t.Fatal(err)
	}
	node, ns := "node-cached-passes", "cached-passes-ns"
	createNode(t, cs, node)
	createNamespace(t, cs, ns)
	cfg := testConfig(t)
	h := newAgent(t, cs, node, cfg, func(o *Options) {
		o.PodCheckInterval = 200 * time.Millisecond
		o.VerifyInterval = 200 * time.Millisecond
		o.PodsWithoutRulesGrace = time.Minute
	})
	h.start(t)
	h.waitReady(t)
	waitFor(t, 10*time.Second, func() (bool, string) { return h.a.decisions.Synced(), "informers not synced" })
	afterSync := counter.count()
	setSandboxCreated(t, cs, createPod(t, cs, ns, "gap", node, true, nil), time.Now().Add(-2*time.Minute))
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := len(eventsWithReason(events(t, cs, ns, "Pod", "gap"), ReasonEgressRulesMissing))
		return n == 1 && h.scrape(t)["authbridge_pods_without_rules"] == 1, fmt.Sprintf("gap pod reported: %d events", n)
	})
	time.Sleep(time.Second) // five more passes of each
	if n := counter.count() - afterSync; n != 0 {
		t.Fatalf("%d pod LIST requests after the informer synced; want 0 (the passes read the cache)", n)
	}
}
