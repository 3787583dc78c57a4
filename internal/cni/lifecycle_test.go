package cni_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kagenti/authbridge-node/internal/agent"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/decision"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// apiReads is what the API server itself counts (apiserver_request_total
// from its /metrics) of GET requests for pods and ConfigMaps: the reads a
// plugin ADD makes when it asks the API. The tests of this package run one
// at a time, and nothing else GETs pods or ConfigMaps meanwhile.
func apiReads(t testing.TB) float64 {
	t.Helper()
	srv := apiserver.Shared(t)
	hc, err := rest.HTTPClientFor(srv.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ln := sc.Text()
		if !strings.HasPrefix(ln, "apiserver_request_total{") || !strings.Contains(ln, `verb="GET"`) ||
			!(strings.Contains(ln, `resource="pods"`) || strings.Contains(ln, `resource="configmaps"`)) {
			continue
		}
		f := strings.Fields(ln)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("parse %q: %v", ln, err)
		}
		sum += v
	}
	return sum
}

// settleReads waits until the count stops moving (the server increments
// it as each request completes).
func settleReads(t testing.TB) float64 {
	t.Helper()
	prev := apiReads(t)
	for i := 0; i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		cur := apiReads(t)
		if cur == prev {
			return cur
		}
		prev = cur
	}
	return prev
}

// applyPluginRBAC creates what manifests/base defines for the plugin's own
// identity (the authbridge-cni ServiceAccount and its ClusterRole and
// binding) in the package's API server.
func applyPluginRBAC(t testing.TB) {
	t.Helper()
	apiserver.ApplyManifests(t, adminClient(t), "base", func(kind, name string) bool {
		return kind == "Namespace" || name == agent.PluginServiceAccount &&
			(kind == "ServiceAccount" || kind == "ClusterRole" || kind == "ClusterRoleBinding")
	})
}

// nodeBoundKubeconfig points e's plugin at the API server with the
// credential the agent writes in production: a token of the plugin's own
// ServiceAccount bound to a Node (agent.PluginCredential, the real code).
func (e *env) nodeBoundKubeconfig(node string) {
	e.t.Helper()
	ctx := context.Background()
	applyPluginRBAC(e.t)
	if _, err := adminClient(e.t).CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	dir := e.t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, apiserver.Shared(e.t).CA, 0o644); err != nil {
		e.t.Fatal(err)
	}
	cred := &agent.PluginCredential{Client: adminClient(e.t), Namespace: "authbridge-system", NodeName: node,
		Server: "https://" + e.forwardAPI(), CAFile: ca, Path: filepath.Join(dir, "var-lib-authbridge", agent.PluginKubeconfigName)}
	if _, err := cred.Refresh(ctx); err != nil {
		e.t.Fatal(err)
	}
	if cred.UnboundFallback {
		e.t.Fatal("the API server refused the Node binding")
	}
	e.kubeconfig = cred.Path
}

// serveAgent runs the agent's real decision cache for node on the env's
// decision socket, as the node agent does.
func (e *env) serveAgent(node string) *agent.DecisionCache {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	dc := agent.NewDecisionCache(adminClient(e.t), node, 0)
	dc.Start(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !dc.Synced() {
		if time.Now().After(deadline) {
			e.t.Fatal("decision cache did not sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ln, err := decision.Listen(filepath.Join(e.stateDir, decision.SocketName))
	if err != nil {
		e.t.Fatal(err)
	}
	go decision.Serve(ctx, ln, dc.Answer, decision.DefaultServeTimeout)
	return dc
}

func onNode(node string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = node } }

// While the agent answers, an ADD makes no API request (counted by the API
// server); the plugin's own kubeconfig even points at a dead address.
func TestAddAsksTheAgent(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{deadAPI: true})
	node := "cni-agent-node"
	nsName := uniqueNS("viaagent")
	uid := createPod(t, nsName, "agent", nil, true, onNode(node))
	createConfigMap(t, nsName, "egressEnforcement: enforce-redirect\n")
	e.serveAgent(node)
	l := e.conflist("abnet", fams, e.abConf(nil))
	before := settleReads(t)
	for i := 0; i < 3; i++ {
		p := e.newPod(nsName, "agent", uid)
		if err := e.add(l, p); err != nil {
			t.Fatalf("ADD via the agent: %v", err)
		}
		if !hasRules(t, p, firstWorking(t), redirect.IPv4) {
			t.Fatal("no rules after ADD via the agent")
		}
		if err := e.del(l, p); err != nil {
			t.Fatal(err)
		}
	}
	if d := settleReads(t) - before; d != 0 {
		t.Fatalf("3 ADDs via the agent made %v pod/ConfigMap GETs on the API server; want 0", d)
	}
}

// When the agent socket is gone (agent restarting, upgrading, not yet up
// after a reboot) the plugin reads the API itself, with its own Node-bound
// credential and minimal RBAC: 2 reads per ADD (pod, ConfigMap).
func TestAddFallsBackToNodeBoundCredential(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{})
	node := "cni-fallback-node"
	e.nodeBoundKubeconfig(node)
	nsName := uniqueNS("fallback")
	uid := createPod(t, nsName, "agent", nil, true, onNode(node))
	if _, err := os.Stat(filepath.Join(e.stateDir, decision.SocketName)); !os.IsNotExist(err) {
		t.Fatalf("decision socket present: %v", err)
	}
	l := e.conflist("abnet", fams, e.abConf(nil))
	before := settleReads(t)
	p := e.newPod(nsName, "agent", uid)
	if err := e.add(l, p); err != nil {
		t.Fatalf("ADD with the agent away: %v", err)
	}
	if !hasRules(t, p, firstWorking(t), redirect.IPv4) {
		t.Fatal("no rules after the fallback ADD")
	}
	if d := settleReads(t) - before; d != 2 {
		t.Fatalf("fallback ADD made %v pod/ConfigMap GETs; want 2 (pod, ConfigMap)", d)
	}
	if err := e.del(l, p); err != nil {
		t.Fatal(err)
	}
}

// excludeNamespaces (default kube-system) pass through with no API request
// (counted by the API server), no agent, and no node state: the pod does
// not even exist in the API server. A non-AuthBridge pod starts without
// node state (after a reboot, before the agent probed); an AuthBridge pod
// fails closed then.
func TestExcludedNamespacesAndNoNodeState(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{noState: true})
	l := e.conflist("abnet", fams, e.abConf(nil))
	before := settleReads(t)
	for i := 0; i < 3; i++ {
		p := e.newPod("kube-system", "coredns-"+strconv.Itoa(i), "")
		if err := e.add(l, p); err != nil {
			t.Fatalf("ADD in kube-system: %v", err)
		}
		noRules(t, p)
		if err := e.check(l, p); err != nil {
			t.Fatalf("CHECK in kube-system: %v", err)
		}
		if err := e.del(l, p); err != nil {
			t.Fatal(err)
		}
	}
	if d := settleReads(t) - before; d != 0 {
		t.Fatalf("3 ADDs in an excluded namespace made %v API reads; want 0", d)
	}
	e.events.waitFor(t, map[string]any{"op": "ADD", "reason": "excluded-namespace"})
	// A namespace named in excludeNamespaces by the admin, likewise.
	l2 := e.conflist("abnet", fams, e.abConf(map[string]any{"excludeNamespaces": []string{"infra"}}))
	p := e.newPod("infra", "dns", "")
	if err := e.add(l2, p); err != nil {
		t.Fatalf("ADD in an excluded namespace: %v", err)
	}
	_ = e.del(l2, p)

	// No node state: plain pods start, AuthBridge pods fail closed.
	nsName := uniqueNS("reboot")
	plainUID := createPod(t, nsName, "plain", nil, false, nil)
	p = e.newPod(nsName, "plain", plainUID)
	if err := e.add(l, p); err != nil {
		t.Fatalf("non-AuthBridge pod without node state: %v", err)
	}
	_ = e.del(l, p)
	abUID := createPod(t, nsName, "agent", nil, true, nil)
	p = e.newPod(nsName, "agent", abUID)
	if err := e.add(l, p); err == nil || !strings.Contains(err.Error(), "node agent has not probed this node") {
		t.Fatalf("AuthBridge pod without node state = %v; want fail closed", err)
	}
}

// firstWorking is the first backend the probe found working here.
func firstWorking(t testing.TB) string {
	for _, b := range redirect.AllBackends {
		for _, r := range probeResults(t) {
			if r.Backend == b && r.Works {
				return b
			}
		}
	}
	t.Fatal("no backend works on this machine")
	return ""
}
