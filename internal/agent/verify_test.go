package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// podTopology is a real pod netns (veth to a peer netns playing the
// outside world) with the proxy's stand-in on 8082, a TCP server on the
// peer's port 80 and a UDP echo on 5353; DNS goes to PeerAltV4.
func podTopology(t *testing.T) *redirecttest.Topology {
	t.Helper()
	testenv.Root(t, "network namespaces, netfilter")
	tp := redirecttest.NewTopology(t)
	tp.ServeRedirect(t, redirect.DefaultOutboundPort)
	tp.ServePeer(t, 80, 5353)
	return tp
}

// checkTraffic is the held-out style check of a pod's egress: the app's TCP
// (any non-proxy UID) arrives at 8082 with its original destination (IPv4
// and IPv6), the proxy's UID goes direct, UDP to a non-resolver is dropped.
func checkTraffic(t *testing.T, tp *redirecttest.Topology) {
	t.Helper()
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(redirecttest.PeerV4, 80), netip.AddrPortFrom(redirecttest.PeerV6, 80)} {
		got, err := tp.Dial(1000, dst)
		if err != nil || got != "redirected "+dst.String() {
			t.Errorf("app TCP to %s = %q, %v; want redirected with the original destination", dst, got, err)
		}
		got, err = tp.Dial(redirect.DefaultProxyUID, dst)
		if err != nil || !strings.HasPrefix(got, "direct ") {
			t.Errorf("proxy UID TCP to %s = %q, %v; want direct", dst, got, err)
		}
	}
	if got, err := tp.SendUDP(1000, netip.AddrPortFrom(redirecttest.PeerV4, 5353)); err == nil {
		t.Errorf("app UDP to a non-resolver answered %q; want dropped", got)
	}
}

// programRecord programs the pod's rules the way the plugin's ADD does
// (enforce.Program with one backend) and returns the record; the netns
// path recorded is the test process's fd of the anonymous netns, a path the
// host can open as long as the test runs.
func programRecord(t *testing.T, cfg config.Agent, netns ns.NetNS, pod *corev1.Pod, backend string) containerstate.Record {
	t.Helper()
	res, err := enforce.Program(enforce.Request{
		Pod: pod, Policy: cfg.Policy, Backends: []string{backend},
		AddrFamilies: []redirect.Family{redirect.IPv4, redirect.IPv6}, NetNS: netns, NewBackend: redirect.New,
		StateDir: cfg.StateDir,
		Record: containerstate.Record{ContainerID: "sandbox-" + string(pod.UID)[:8], IfName: "eth0",
			Netns:     fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), netns.Fd()),
			Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), Mode: podmode.EnforceRedirect},
	})
	if err != nil {
		t.Fatalf("program %s: %v", backend, err)
	}
	if res.Backend != backend {
		t.Fatalf("programmed with %s, want %s", res.Backend, backend)
	}
	rec, err := containerstate.Read(cfg.StateDir, "sandbox-"+string(pod.UID)[:8])
	if err != nil || rec == nil {
		t.Fatalf("record: %v, %v", rec, err)
	}
	return *rec
}

func condition(t *testing.T, cs kubernetes.Interface, p *corev1.Pod) *corev1.PodCondition {
	t.Helper()
	cur, err := cs.CoreV1().Pods(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return podcondition.Current(cur)
}

func waitCondition(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, status corev1.ConditionStatus, reason string) *corev1.PodCondition {
	t.Helper()
	var c *corev1.PodCondition
	waitFor(t, 20*time.Second, func() (bool, string) {
		c = condition(t, cs, p)
		return c != nil && c.Status == status && c.Reason == reason, fmt.Sprintf("condition %+v, want %s/%s", c, status, reason)
	})
	return c
}

// TestDriftFoundAndRepaired: on each backend, a pod netns with the plugin's
// rules (programmed through enforce.Program, as ADD does) gets the
// condition True/Verified from the agent; then the rules are flushed from
// inside the netns (`nft flush ruleset`, `iptables -t nat -F`) and the
// agent's verify loop finds it, re-applies the record's spec with its
// backend, emits EgressRulesDrifted naming what differed, counts it, and
// real traffic is redirected again.
func TestDriftFoundAndRepaired(t *testing.T) {
	cs := admin(t)
	const nsName = "drift-ns"
	createNamespace(t, cs, nsName)
	for _, tc := range []struct {
		backend string
		flush   []string
		differs string // what the drift Event must name
	}{
		{redirect.BackendNFTables, []string{"nft", "flush", "ruleset"}, "table ip authbridge missing"},
		{redirect.BackendIPTablesNFT, []string{"iptables-nft", "-t", "nat", "-F"}, "OUTPUT -> " + redirect.ChainRedirect},
		{redirect.BackendIPTablesLegacy, []string{"iptables-legacy", "-t", "nat", "-F"}, "OUTPUT -> " + redirect.ChainRedirect},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			node := "node-drift-" + tc.backend
			createNode(t, cs, node)
			cfg := testConfig(t)
			cfg.ClusterDNS = []string{redirecttest.PeerAltV4.String()}
			const interval = time.Second
			h := newAgent(t, cs, node, cfg, func(o *Options) { o.VerifyInterval = interval })
			tp := podTopology(t)
			pod := createPod(t, cs, nsName, "drift-"+tc.backend, node, true, nil)
			rec := programRecord(t, cfg, tp.Pod, pod, tc.backend)
			h.start(t)

			c := waitCondition(t, cs, pod, corev1.ConditionTrue, podcondition.ReasonVerified)
			if !strings.Contains(c.Message, tc.backend) {
				t.Errorf("Verified message %q does not name the backend", c.Message)
			}
			checkTraffic(t, tp)

			if out, err := redirecttest.Output(tp.Pod, tc.flush[0], tc.flush[1:]...); err != nil {
				t.Fatalf("flush: %v: %s", err, out)
			}
			if err := enforce.Verify(tp.Pod, redirect.New, rec); err == nil {
				t.Fatal("the flush left the rules matching: the test would prove nothing")
			}
			flushed := time.Now()
			driftKey := metrics.Key("authbridge_rules_drift_total", map[string]string{"backend": tc.backend})
			waitFor(t, 10*interval, func() (bool, string) {
				n := len(eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesDrifted))
				return n == 1 && h.scrape(t)[driftKey] == 1, fmt.Sprintf("%d drift events, %s = %v", n, driftKey, h.scrape(t)[driftKey])
			})
			t.Logf("%s: flushed rules found and re-applied %s after the flush (verifyInterval %s)", tc.backend, time.Since(flushed).Round(time.Millisecond), interval)
			ev := eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesDrifted)[0]
			if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.UID != pod.UID ||
				!strings.Contains(ev.Message, "re-applied and verified") || !strings.Contains(ev.Message, tc.differs) {
				t.Errorf("drift Event: %s %q (uid %s)", ev.Type, ev.Message, ev.InvolvedObject.UID)
			}
			if err := enforce.Verify(tp.Pod, redirect.New, rec); err != nil {
				t.Fatalf("rules after the repair: %v", err)
			}
			waitCondition(t, cs, pod, corev1.ConditionTrue, podcondition.ReasonVerified)
			checkTraffic(t, tp)
			waitFor(t, 5*interval, func() (bool, string) {
				s := h.scrape(t)
				return s["authbridge_pods_rules_mismatched"] == 0 && s["authbridge_verify_pass_duration_seconds_count"] >= 2, fmt.Sprintf("mismatched %v, passes %v", s["authbridge_pods_rules_mismatched"], s["authbridge_verify_pass_duration_seconds_count"])
			})
			if v := h.scrape(t)["authbridge_pod_enforced_seconds_count"]; v != 1 {
				t.Errorf("authbridge_pod_enforced_seconds_count = %v, want 1 (the first True only, not the one after drift)", v)
			}
		})
	}
}

// TestDriftUnrepairableCountsMismatch: a drifted pod whose re-apply fails
// (the record names a backend whose binary is absent here: a stand-in for a
// kernel that refuses the batch) stays in authbridge_pods_rules_mismatched
// with its condition False/RulesDrifted.
func TestDriftUnrepairableCountsMismatch(t *testing.T) {
	cs := admin(t)
	const nsName, node = "drift-bad-ns", "node-drift-bad"
	createNamespace(t, cs, nsName)
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ClusterDNS = []string{redirecttest.PeerAltV4.String()}
	broken := func(name string) (redirect.Backend, error) {
		b, err := redirect.New(name)
		return brokenApply{b}, err
	}
	h := newAgent(t, cs, node, cfg, func(o *Options) { o.VerifyInterval = time.Hour; o.NewBackend = broken })
	tp := podTopology(t)
	pod := createPod(t, cs, nsName, "drift-bad", node, true, nil)
	programRecord(t, cfg, tp.Pod, pod, redirect.BackendNFTables)
	h.start(t)
	h.waitReady(t)
	if _, err := redirecttest.Output(tp.Pod, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	h.a.VerifyPass(context.Background(), true)
	if v := h.scrape(t)["authbridge_pods_rules_mismatched"]; v != 1 {
		t.Errorf("authbridge_pods_rules_mismatched = %v, want 1", v)
	}
	c := condition(t, cs, pod)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != podcondition.ReasonRulesDrifted || !strings.Contains(c.Message, "re-applying them failed") {
		t.Errorf("condition = %+v, want False/RulesDrifted naming the failure", c)
	}
	evs := eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesDrifted)
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "FAILED") {
		t.Errorf("drift events: %s", describeEvents(evs))
	}
	// The next pass tries again but does not repeat the Event or the count;
	// the gauge keeps the pod.
	h.a.VerifyPass(context.Background(), true)
	s := h.scrape(t)
	driftKey := metrics.Key("authbridge_rules_drift_total", map[string]string{"backend": redirect.BackendNFTables})
	if s[driftKey] != 1 || s["authbridge_pods_rules_mismatched"] != 1 {
		t.Errorf("after a second pass: %s = %v (want 1), mismatched = %v (want 1)", driftKey, s[driftKey], s["authbridge_pods_rules_mismatched"])
	}
	if evs := eventsWithReason(events(t, cs, nsName, "Pod", pod.Name), ReasonRulesDrifted); len(evs) != 1 {
		t.Errorf("a second pass repeated the drift Event: %s", describeEvents(evs))
	}
}

// brokenApply makes a real backend's Apply fail without touching the
// kernel (Verify and Remove are real): a kernel here accepts every batch,
// so the failure is injected.
type brokenApply struct{ redirect.Backend }

func (b brokenApply) Apply(redirect.Spec) error {
	return fmt.Errorf("injected: kernel refused the batch")
}

// TestConditionCooperative: a pod the plugin recorded as cooperative gets
// the condition False/Cooperative (visible as such, not as broken), and a
// pod without a sidecar gets none.
func TestConditionCooperative(t *testing.T) {
	cs := admin(t)
	const nsName, node = "coop-cond-ns", "node-coop-cond"
	createNamespace(t, cs, nsName)
	createNode(t, cs, node)
	cfg := testConfig(t)
	h := newAgent(t, cs, node, cfg, func(o *Options) { o.VerifyInterval = time.Hour })
	coop := createPod(t, cs, nsName, "coop", node, true, nil)
	plain := createPod(t, cs, nsName, "plain", node, false, nil)
	for _, p := range []*corev1.Pod{coop, plain} {
		if err := containerstate.Write(cfg.StateDir, containerstate.Record{ContainerID: "c-" + p.Name, Namespace: nsName, Pod: p.Name,
			PodUID: string(p.UID), Mode: podmode.Cooperative, Reason: podmode.ReasonAnnotation}); err != nil {
			t.Fatal(err)
		}
	}
	h.a.VerifyPass(context.Background(), true)
	c := condition(t, cs, coop)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != podcondition.ReasonCooperative || !strings.Contains(c.Message, string(podmode.ReasonAnnotation)) {
		t.Errorf("cooperative pod: condition %+v, want False/Cooperative naming the reason", c)
	}
	if c := condition(t, cs, plain); c != nil {
		t.Errorf("pod without a sidecar got condition %+v", c)
	}
}

// TestConditionAtPluginAdd: the plugin's ADD event (here sent over the real
// events socket, as the plugin does) makes the agent verify the new pod's
// rules at once, not at the next interval (1 h here): the condition turns
// True/Verified and the time from the sandbox to True is observed.
func TestConditionAtPluginAdd(t *testing.T) {
	cs := admin(t)
	const nsName, node = "add-cond-ns", "node-add-cond"
	createNamespace(t, cs, nsName)
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ClusterDNS = []string{redirecttest.PeerAltV4.String()}
	h := newAgent(t, cs, node, cfg, func(o *Options) { o.VerifyInterval = time.Hour })
	h.start(t)
	h.waitReady(t)
	tp := podTopology(t)
	pod := createPod(t, cs, nsName, "added", node, true, nil)
	pod = setSandboxCreated(t, cs, pod, time.Now().Add(-3*time.Second))
	programRecord(t, cfg, tp.Pod, pod, redirect.BackendIPTablesLegacy)
	if err := pluginevents.Send(h.a.SocketPath(), pluginevents.Event{Op: pluginevents.OpAdd, Result: pluginevents.Success,
		Mode: podmode.EnforceRedirect.Label(), Backend: redirect.BackendIPTablesLegacy, Namespace: nsName, Pod: pod.Name, Seconds: 0.02}); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, cs, pod, corev1.ConditionTrue, podcondition.ReasonVerified)
	if !strings.Contains(c.Message, redirect.BackendIPTablesLegacy) || !strings.Contains(c.Message, "ipv6") {
		t.Errorf("condition message %q: want backend and families", c.Message)
	}
	s := h.scrape(t)
	if n, sum := s["authbridge_pod_enforced_seconds_count"], s["authbridge_pod_enforced_seconds_sum"]; n != 1 || sum < 2 || sum > 60 {
		t.Errorf("authbridge_pod_enforced_seconds count %v sum %v; want one observation of a few seconds", n, sum)
	}
}
