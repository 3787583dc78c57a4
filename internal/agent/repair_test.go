package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// startPodProcess runs a real process (the pod's "pause") inside netns n
// and inside a cgroup named the way the kubelet's cgroupfs driver names a
// pod's (kubepods/besteffort/pod<uid>/<container>), below a test-owned
// group, so podnetns.Finder finds the pod's netns by its UID through
// /proc as it does on a node.
func startPodProcess(t *testing.T, n ns.NetNS, podUID string) {
	t.Helper()
	root := testenv.CgroupRoot(t)
	dir := filepath.Join(root, fmt.Sprintf("authbridge-agent-test-%d", os.Getpid()), "kubepods/besteffort/pod"+podUID, "pause")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "300")
	// Forked from the thread inside n: the process lives in the pod netns.
	if err := n.Do(func(ns.NetNS) error { return cmd.Start() }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		for d := dir; d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			for i := 0; i < 50; i++ { // EBUSY until the killed process left the group
				if err := os.Remove(d); err == nil || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRepairInPlace: a bare AuthBridge pod (no controller: it would never
// come back if deleted) whose network was set up without the plugin: a real
// netns with no rules, a real process of the pod in a kubelet-named cgroup,
// the pod in the real kube-apiserver with its sandbox older than the grace.
// The agent finds its netns through /proc, programs the plugin's rules
// through enforce.Program, verifies them and writes repair-<uid>; the pod
// keeps its UID (nothing deleted), gets EgressRulesMissing then
// EgressRulesRepaired and the condition True, real traffic is redirected,
// and the record is pruned once the pod is gone.
func TestRepairInPlace(t *testing.T) {
	cs := admin(t)
	const nsName, node = "repair-ns", "node-repair"
	createNamespace(t, cs, nsName)
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ClusterDNS = []string{redirecttest.PeerAltV4.String()}
	cfg.RepairPods = true // deletion is only the fallback: a repaired pod must stay
	tp := podTopology(t)
	pod := createPod(t, cs, nsName, "bare", node, true, nil)
	pod = setSandboxCreated(t, cs, pod, time.Now().Add(-2*time.Minute))
	startPodProcess(t, tp.Pod, string(pod.UID))
	for _, b := range redirect.AllBackends {
		if err := tp.Do(func() error { nb, _ := redirect.New(b); return nb.Verify(redirect.DefaultSpec(redirect.IPv4)) }); err == nil {
			t.Fatalf("%s rules present before the repair: the test would prove nothing", b)
		}
	}
	h := newAgent(t, cs, node, cfg, func(o *Options) {
		o.PodCheckInterval = 200 * time.Millisecond
		o.VerifyInterval = 300 * time.Millisecond
		o.HostRoot = "/" // the test runs in the host's PID namespace: /proc is the host's
	})
	h.start(t)
	h.waitReady(t)

	id := containerstate.RepairID(string(pod.UID))
	var rec *containerstate.Record
	waitFor(t, 20*time.Second, func() (bool, string) {
		rec, _ = containerstate.Read(cfg.StateDir, id)
		n := len(eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesRepaired))
		return rec != nil && n == 1, fmt.Sprintf("record %v, %d repaired events", rec != nil, n)
	})
	if rec.Backend != redirect.BackendNFTables || rec.Spec == nil || !rec.Spec.Has(redirect.IPv6) || rec.PodUID != string(pod.UID) ||
		!strings.HasPrefix(rec.Netns, "/proc/") {
		t.Errorf("record = %+v; want nftables (first working), both families, the pod's UID, the netns path as the host sees it", rec)
	}
	if err := enforce.Verify(tp.Pod, redirect.New, *rec); err != nil {
		t.Fatalf("rules in the pod netns after the repair: %v", err)
	}
	c := waitCondition(t, cs, pod, corev1.ConditionTrue, podcondition.ReasonVerified)
	if !strings.Contains(c.Message, "nftables") {
		t.Errorf("condition message %q does not name the backend", c.Message)
	}
	checkTraffic(t, tp)

	evs := events(t, cs, nsName, "Pod", pod.Name)
	if len(eventsWithReason(evs, ReasonEgressRulesMissing)) != 1 || len(eventsWithReason(evs, ReasonRepairFailed)) != 0 || len(eventsWithReason(evs, ReasonPodRepaired)) != 0 {
		t.Errorf("events: %s; want one EgressRulesMissing, no EgressRepairFailed, no deletion", describeEvents(evs))
	}
	if ev := eventsWithReason(evs, ReasonRulesRepaired)[0]; !strings.Contains(ev.Message, "conntrack") || ev.InvolvedObject.UID != pod.UID {
		t.Errorf("repaired Event %q (uid %s): must say existing connections are not redirected", ev.Message, ev.InvolvedObject.UID)
	}
	cur, err := cs.CoreV1().Pods(nsName).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil || cur.UID != pod.UID || cur.DeletionTimestamp != nil {
		t.Fatalf("pod after the repair: %v, %v; want the same pod, not deleted", cur, err)
	}
	s := h.scrape(t)
	for k, want := range map[string]float64{
		metrics.Key("authbridge_rules_repairs_total", map[string]string{"result": "success"}): 1,
		"authbridge_pods_without_rules":         0,
		"authbridge_pods_repaired_total":        0,
		"authbridge_pod_enforced_seconds_count": 1,
	} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	// The sandbox was 2 minutes old: the histogram saw about that.
	if sum := s["authbridge_pod_enforced_seconds_sum"]; sum < 110 || sum > 200 {
		t.Errorf("authbridge_pod_enforced_seconds_sum = %v, want about 120 (sandbox 2 min old)", sum)
	}

	// Drift in a repaired pod is found through the record like any other.
	if _, err := redirecttest.Output(tp.Pod, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		return enforce.Verify(tp.Pod, redirect.New, *rec) == nil && len(eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesDrifted)) == 1, "drift re-applied"
	})

	// The pod gone: its repair record is pruned.
	if err := cs.CoreV1().Pods(nsName).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		r, _ := containerstate.Read(cfg.StateDir, id)
		return r == nil, "repair record still there"
	})
}

// TestRepairFailsThenDeletesOnlyWithRepairPods: a pod without rules whose
// netns cannot be found (no process of it runs here) gets
// EgressRepairFailed and the condition RepairFailed; with repairPods its
// controller-owned copy is deleted as the fallback, the bare one is kept.
func TestRepairFailsThenDeletesOnlyWithRepairPods(t *testing.T) {
	cs := admin(t)
	const nsName, node = "repair-fail-ns", "node-repair-fail"
	createNamespace(t, cs, nsName)
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ClusterDNS = []string{"10.96.0.10"}
	cfg.RepairPods = true
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "0b6a3c6e-aaaa-4c5e-9f0a-00000000000a", Controller: new(bool)}
	*owner.Controller = true
	owned := setSandboxCreated(t, cs, createPod(t, cs, nsName, "owned", node, true, owner), time.Now().Add(-2*time.Minute))
	bare := setSandboxCreated(t, cs, createPod(t, cs, nsName, "bare", node, true, nil), time.Now().Add(-2*time.Minute))
	h := newAgent(t, cs, node, cfg, func(o *Options) {
		o.PodCheckInterval = 200 * time.Millisecond
		o.VerifyInterval = time.Hour
		o.HostRoot = "/"
	})
	h.start(t)
	h.waitReady(t)
	waitFor(t, 20*time.Second, func() (bool, string) {
		// No kubelet confirms the deletion: the pod stays with a deletionTimestamp.
		p, err := cs.CoreV1().Pods(nsName).Get(context.Background(), owned.Name, metav1.GetOptions{})
		deleted := err != nil || p.DeletionTimestamp != nil
		n := len(eventsWithReason(events(t, cs, nsName, "Pod", bare.Name), ReasonRepairFailed))
		return deleted && n == 1, fmt.Sprintf("owned pod deleted %v, bare pod repair-failed events %d", deleted, n)
	})
	c := condition(t, cs, bare)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != podcondition.ReasonRepairFailed || !strings.Contains(c.Message, "no process of the pod found") {
		t.Errorf("bare pod condition %+v, want False/RepairFailed naming why", c)
	}
	// Later passes retry without flapping the condition through Repairing.
	time.Sleep(time.Second) // several PodCheckIntervals
	if c2 := condition(t, cs, bare); c2 == nil || c2.Reason != podcondition.ReasonRepairFailed || !c2.LastProbeTime.Equal(&c.LastProbeTime) {
		t.Errorf("condition after retries %+v; want RepairFailed, not rewritten", c2)
	}
	if v := h.scrape(t)[metrics.Key("authbridge_rules_repairs_total", map[string]string{"result": "failure"})]; v < 2 {
		t.Errorf("failed repairs counted %v, want at least 2", v)
	}
	if v := h.scrape(t)["authbridge_pods_repaired_total"]; v != 1 {
		t.Errorf("authbridge_pods_repaired_total = %v, want 1 (the owned pod deleted)", v)
	}
	if p, err := cs.CoreV1().Pods(nsName).Get(context.Background(), bare.Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("bare pod: %v, %v; a pod without a controller is never deleted", p, err)
	}
}

// TestRepairHelpers: the recorded netns path is the host's own (the agent
// reads the host's procfs under its host root), and a pod's families come
// from its status IPs.
func TestRepairHelpers(t *testing.T) {
	for _, tc := range []struct{ root, in, want string }{
		{"/host", "/host/proc/42/ns/net", "/proc/42/ns/net"},
		{"/", "/proc/42/ns/net", "/proc/42/ns/net"},
		{"", "/proc/42/ns/net", "/proc/42/ns/net"},
		{"/host", "/elsewhere/ns", "/elsewhere/ns"},
	} {
		if got := hostNetnsPath(tc.root, tc.in); got != tc.want {
			t.Errorf("hostNetnsPath(%q, %q) = %q, want %q", tc.root, tc.in, got, tc.want)
		}
	}
	p := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::1"}}}}
	if got := podFamilies(p); len(got) != 2 || got[0] != redirect.IPv4 || got[1] != redirect.IPv6 {
		t.Errorf("podFamilies(dual stack) = %v", got)
	}
	p.Status.PodIPs = nil
	if got := podFamilies(p); len(got) != 1 || got[0] != redirect.IPv4 {
		t.Errorf("podFamilies(podIP only) = %v", got)
	}
}
