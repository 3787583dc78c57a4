package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/decision"
)

// OwnerCheck against the real API server: a rollout or restart keeps the
// plugin; a deleted DaemonSet, one being deleted, one that no longer
// selects the node (nodeSelector, affinity, untolerated taint) and an
// agent whose ServiceAccount was deleted (kubectl delete -k) uninstall;
// an unreachable API server keeps (it cannot tell).
func TestOwnerCheck(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	ctx := context.Background()
	ns, node := "owner-ns", "node-owner"
	createNamespace(t, adm, ns)
	createNode(t, adm, node)
	labels := map[string]string{"app": "agent"}
	ds, err := adm.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "authbridge-node-x"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "node-agent", Image: "example.com/agent:1"}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	createPod(t, adm, ns, "agent-pod", node, false, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: &yes})
	// DaemonSet is a fallback name only: the owner reference wins.
	check := OwnerCheck{Client: adm, Namespace: ns, PodName: "agent-pod", DaemonSet: "wrong-name", NodeName: node}
	expect := func(step string, uninstall bool, why string) {
		t.Helper()
		v := check.Check(ctx)
		if v.Uninstall != uninstall || !strings.Contains(v.Why, why) {
			t.Fatalf("%s: verdict %+v; want uninstall=%v with %q", step, v, uninstall, why)
		}
	}
	updateDS := func(mut func(*appsv1.DaemonSet)) {
		t.Helper()
		d, err := adm.AppsV1().DaemonSets(ns).Get(ctx, ds.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mut(d)
		if _, err := adm.AppsV1().DaemonSets(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setTaints := func(taints ...corev1.Taint) {
		t.Helper()
		n, err := adm.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Taints = taints
		if _, err := adm.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	expect("rollout", false, "still selects node")
	// Cordon (kubectl drain): the DaemonSet controller tolerates it.
	setTaints(corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	expect("cordoned node", false, "still selects node")
	setTaints(corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule})
	expect("untolerated taint", true, "does not tolerate taint dedicated=gpu:NoSchedule")
	updateDS(func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	})
	expect("tolerated taint", false, "still selects node")
	updateDS(func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "authbridge"} })
	expect("nodeSelector", true, "no longer selects node "+node)
	updateDS(func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.NodeSelector = nil
		d.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{node}}}}},
		}}}
	})
	expect("node affinity", true, "no longer selects node "+node)
	updateDS(func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.Affinity = nil })
	expect("affinity removed", false, "still selects node")

	// The API server is away: cannot tell, keep.
	cfg := srv.AdminConfig()
	cfg.Host, cfg.Timeout = "https://127.0.0.1:1", time.Second
	down, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v := (OwnerCheck{Client: down, Namespace: ns, PodName: "agent-pod", NodeName: node}).Check(ctx); v.Uninstall || !strings.Contains(v.Why, "keeping the plugin installed") {
		t.Fatalf("API server down: %+v; want keep", v)
	}
	// kubectl delete -k deleted the agent's ServiceAccount: its token is
	// refused (401).
	tok, err := srv.ServiceAccountToken(ctx, ns, "doomed-agent", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.CoreV1().ServiceAccounts(ns).Delete(ctx, "doomed-agent", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	doomed, err := kubernetes.NewForConfig(srv.TokenConfig(tok))
	if err != nil {
		t.Fatal(err)
	}
	// The token authenticator sees the deletion through its own informer:
	// until then the token still authenticates and the check says 403 (RBAC).
	// Under load (CI beside a kind cluster) that took over 10 s once.
	waitFor(t, 60*time.Second, func() (bool, string) {
		v := (OwnerCheck{Client: doomed, Namespace: ns, PodName: "agent-pod", NodeName: node}).Check(ctx)
		return v.Uninstall && strings.Contains(v.Why, "no longer accepts the agent's ServiceAccount token"), v.Why
	})

	// Being deleted (a finalizer holds it), then gone.
	updateDS(func(d *appsv1.DaemonSet) { d.Finalizers = []string{"example.com/hold"} })
	if err := adm.AppsV1().DaemonSets(ns).Delete(ctx, ds.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("being deleted", true, "is being deleted")
	updateDS(func(d *appsv1.DaemonSet) { d.Finalizers = nil })
	waitFor(t, 10*time.Second, func() (bool, string) {
		v := check.Check(ctx)
		return v.Uninstall && strings.Contains(v.Why, "is deleted"), v.Why
	})
}

// The agent answers decision queries from its node-scoped cache, and
// keeps answering with the API server stopped. Its own API server: this
// test stops it.
func TestDecisionsFromCacheWithAPIServerStopped(t *testing.T) {
	s := apiserver.Start(t)
	adm := s.AdminClient(t)
	ctx := context.Background()
	ns, node := "cache-ns", "node-cache"
	createNamespace(t, adm, ns)
	createNode(t, adm, node)
	pod := createPod(t, adm, ns, "early", node, true, nil)
	createPod(t, adm, ns, "elsewhere", "other-node", true, nil)
	if _, err := adm.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.NamespaceConfigMap},
		Data: map[string]string{config.NamespaceConfigMapKey: "egressEnforcement: auto\n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A VM-sandbox pod: its RuntimeClass handler is answered too.
	if _, err := adm.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "vm-sandbox"}, Handler: "kata-qemu"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rcName := "vm-sandbox"
	vm := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: ns}, Spec: corev1.PodSpec{NodeName: node, RuntimeClassName: &rcName,
		Containers: []corev1.Container{{Name: "app", Image: "x:1"}, {Name: "authbridge-proxy", Image: "x:1"}}}}
	if _, err := adm.CoreV1().Pods(ns).Create(ctx, vm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	dc := NewDecisionCache(adm, node, 0)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	dc.Start(runCtx)
	waitFor(t, 10*time.Second, func() (bool, string) { return dc.Synced(), "informers not synced" })
	sock := filepath.Join(t.TempDir(), decision.SocketName)
	ln, err := decision.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go decision.Serve(runCtx, ln, dc.Answer, decision.DefaultServeTimeout)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("decision socket %v %v; want a 0600 socket", fi, err)
	}
	ask := func(name, uid string) decision.Response {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := decision.Query(qctx, sock, decision.Request{Namespace: ns, Name: name, UID: uid})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask("early", string(pod.UID))
	if r.Error != "" || r.Source != decision.SourceCache || r.Pod == nil || r.Pod.UID != pod.UID || r.NamespaceConfig == nil || *r.NamespaceConfig != "egressEnforcement: auto\n" || r.RuntimeHandler != nil {
		t.Fatalf("answer for a cached pod: %+v", r)
	}
	if r := ask("vm", ""); r.Error != "" || r.RuntimeHandler == nil || *r.RuntimeHandler != "kata-qemu" {
		t.Fatalf("answer for a pod with a RuntimeClass: %+v, want handler kata-qemu", r)
	}
	// A pod created after the sync arrives through the watch.
	late := createPod(t, adm, ns, "late", node, true, nil)
	if r := ask("late", string(late.UID)); r.Error != "" || r.Pod == nil || r.Pod.UID != late.UID {
		t.Fatalf("answer for a pod created later: %+v", r)
	}
	// Pods of other nodes are not in the cache: read from the API after the wait.
	if r := ask("elsewhere", ""); r.Error != "" || r.Source != decision.SourceAPI {
		t.Fatalf("answer for another node's pod: %+v", r)
	}

	s.Stop()
	// API server gone: cached pods are still answered, from the cache.
	r = ask("early", string(pod.UID))
	if r.Error != "" || r.Source != decision.SourceCache || r.Pod == nil || r.Pod.UID != pod.UID || r.NamespaceConfig == nil {
		t.Fatalf("answer with the API server stopped: %+v", r)
	}
	if r := ask("vm", ""); r.Error != "" || r.RuntimeHandler == nil || *r.RuntimeHandler != "kata-qemu" {
		t.Fatalf("RuntimeClass handler with the API server stopped: %+v", r)
	}
	// An unknown pod: waited for, then the read fails: an error answer.
	if r := ask("never", ""); r.Error == "" || !strings.Contains(r.Error, "not in the node agent's cache") {
		t.Fatalf("answer for an unknown pod with the API server stopped: %+v", r)
	}
}

// The opt-in startup taint is removed once the agent is ready (installed,
// probed, labelled), other taints stay, and a restarted agent never adds
// it back.
func TestStartupTaint(t *testing.T) {
	cs := admin(t)
	ctx := context.Background()
	node := "node-taint"
	n := createNode(t, cs, node)
	n.Spec.Taints = []corev1.Taint{{Key: TaintAgentNotReady, Effect: corev1.TaintEffectNoSchedule}, {Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	taints := func() []string {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, t := range n.Spec.Taints {
			out = append(out, t.Key)
		}
		return out
	}
	h := newAgent(t, cs, node, testConfig(t), nil)
	h.start(t)
	h.waitReady(t)
	waitFor(t, 10*time.Second, func() (bool, string) {
		k := taints()
		return len(k) == 1 && k[0] == "dedicated", strings.Join(k, ",")
	})
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	h = newAgent(t, cs, node, testConfig(t), nil)
	h.start(t)
	h.waitReady(t)
	time.Sleep(300 * time.Millisecond)
	if k := taints(); len(k) != 1 || k[0] != "dedicated" {
		t.Fatalf("taints after an agent restart: %v", k)
	}
}

// An AuthBridge pod in an excluded namespace is not "without rules" (the
// plugin passed it through by design, so no EgressRulesMissing, no
// repair), but a weakening: WARN once and config_weakenings{excludeNamespaces}.
func TestExcludedNamespaceWithAuthBridgePodsIsAWeakening(t *testing.T) {
	cs := admin(t)
	ctx := context.Background()
	node := "node-excluded"
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ExcludeNamespaces = []string{"excl-infra"}
	createNamespace(t, cs, "excl-infra")
	createPod(t, cs, "excl-infra", "ab", node, true, nil)
	h := newAgent(t, cs, node, cfg, func(o *Options) { o.PodsWithoutRulesGrace = time.Nanosecond })
	weakening := h.a.Metrics().ConfigWeakenings.WithLabelValues("excludeNamespaces")
	if v := testutil.ToFloat64(weakening); v != 0 {
		t.Fatalf("weakening before any AuthBridge pod was seen: %v", v)
	}
	time.Sleep(10 * time.Millisecond)
	pods, err := h.a.PodsWithoutRules(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 0 {
		t.Fatalf("pods without rules: %v; an excluded namespace's pod is not one", len(pods))
	}
	if v := testutil.ToFloat64(weakening); v != 1 {
		t.Fatalf("config_weakenings{excludeNamespaces} = %v; want 1", v)
	}
	if !strings.Contains(h.logs.String(), `"setting":"excludeNamespaces"`) || !strings.Contains(h.logs.String(), `"namespace":"excl-infra"`) {
		t.Fatalf("no WARN naming the namespace: %s", h.logs.String())
	}
}

// After a reboot with the API server away, the credential written before
// (on disk) lets the installer go on at once, while the refresh keeps
// retrying; without one the installer waits.
func TestCredentialRunWithAPIServerAway(t *testing.T) {
	srv := apiserver.Shared(t)
	cfg := srv.AdminConfig()
	cfg.Host, cfg.Timeout = "https://127.0.0.1:1", 500*time.Millisecond
	down, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, srv.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int32
	run := func(path string) (written chan struct{}, stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		written = make(chan struct{})
		done := make(chan struct{})
		c := &PluginCredential{Client: down, Namespace: "authbridge-system", NodeName: "n", Server: "https://127.0.0.1:1", CAFile: ca, Path: path,
			OnRefreshError: func(error) { failures.Add(1) }}
		go func() { defer close(done); _ = c.Run(ctx, func() { close(written) }) }()
		return written, func() { cancel(); <-done }
	}
	kept := filepath.Join(dir, "kept", PluginKubeconfigName)
	if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, []byte("from before the reboot"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, stop := run(kept)
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("an existing credential did not let the installer go on")
	}
	stop()
	if b, _ := os.ReadFile(kept); string(b) != "from before the reboot" {
		t.Fatalf("the kept credential was changed without a new token: %q", b)
	}
	w, stop = run(filepath.Join(dir, "none", PluginKubeconfigName))
	select {
	case <-w:
		t.Fatal("written() without any credential")
	case <-time.After(2 * time.Second):
	}
	stop()
	// Every failed attempt is reported (authbridge_token_refresh_errors_total).
	if failures.Load() < 2 {
		t.Fatalf("%d refresh failures reported; want one per failed attempt (at least 2)", failures.Load())
	}
}
