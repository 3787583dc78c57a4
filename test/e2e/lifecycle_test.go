//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	agentNS        = "authbridge-system"
	agentDS        = "authbridge-node"
	agentConfigMap = "authbridge-node-config"
	metricsPort    = "9860"
	// forceFailLabel takes a node out of the main agent DaemonSet (see the
	// affinity in test/e2e/overlay) and into the probe-force-fail clone.
	forceFailLabel = "e2e.authbridge.kagenti.io/probe-force-fail"
	forceFailEnv   = "AUTHBRIDGE_PROBE_FORCE_FAIL"
)

// redirectWorks makes the app call url and checks the call arrived at the
// pod's sidecar (a record with origDst).
func (e *env) redirectWorks(ns, pod, url string) error {
	before, err := e.recordCount(ns, pod)
	if err != nil {
		return err
	}
	if out, err := e.podExec(ns, pod, "app", "/netcheck", "get", url); err != nil {
		return fmt.Errorf("app GET %s: %v: %s", url, err, out)
	}
	after, err := e.recordCount(ns, pod)
	if err != nil {
		return err
	}
	if after != before+1 {
		return fmt.Errorf("app GET %s: sidecar records %d -> %d, want one more (the call was not redirected)", url, before, after)
	}
	return nil
}

func (e *env) recordCount(ns, pod string) (int, error) {
	out, err := e.podExec(ns, pod, sidecarName, "/netcheck", "get", "http://127.0.0.1:8099/")
	if err != nil {
		return 0, fmt.Errorf("sidecar records: %v: %s", err, out)
	}
	return strings.Count(out, `"origDst"`), nil
}

// waitEvent waits for an Event on the pod whose message contains want.
func (e *env) waitEvent(t *testing.T, ns, pod, want string) string {
	t.Helper()
	var got string
	eventually(t, 2*time.Minute, fmt.Sprintf("event on %s/%s containing %q", ns, pod, want), func() error {
		ev, err := e.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return err
		}
		for _, x := range ev.Items {
			if strings.Contains(x.Message, want) {
				got = x.Reason + ": " + x.Message
				return nil
			}
		}
		return fmt.Errorf("events so far: %s", e.podEvents(ns, pod))
	})
	return got
}

func (e *env) nodeIP(t *testing.T, node string) string {
	t.Helper()
	n, err := e.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", node, err)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Fatalf("node %s has no InternalIP", node)
	return ""
}

// scrape returns the agent's metrics on node as "name{labels}" -> value.
func (e *env) scrape(t *testing.T, node string) map[string]float64 {
	t.Helper()
	url := "http://" + net.JoinHostPort(e.nodeIP(t, node), metricsPort) + "/metrics"
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// metricSum adds every series of name whose labels contain all of with.
func metricSum(m map[string]float64, name string, with ...string) (float64, bool) {
	var sum float64
	found := false
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, w := range with {
			if !strings.Contains(k, w) {
				ok = false
			}
		}
		if ok {
			sum += v
			found = true
		}
	}
	return sum, found
}

// setCooperative edits the agent ConfigMap's allowCooperative and restarts
// the agent so the plugin entry carries the new policy.
func (e *env) setCooperative(t *testing.T, allow bool) {
	t.Helper()
	ctx := context.Background()
	cm, err := e.cs.CoreV1().ConfigMaps(agentNS).Get(ctx, agentConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get config: %v", err)
	}
	var kept []string
	for _, l := range strings.Split(cm.Data["config.yaml"], "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "allowCooperative:") || strings.HasPrefix(s, "acknowledgeCooperativeRisks:") {
			continue
		}
		kept = append(kept, l)
	}
	cfg := strings.Join(kept, "\n")
	if allow {
		cfg = "allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2\n" + cfg
	} else {
		cfg = "allowCooperative: false\n" + cfg
	}
	cm.Data["config.yaml"] = cfg
	if _, err := e.cs.CoreV1().ConfigMaps(agentNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update config: %v", err)
	}
	e.restartAgent(t)
}

func (e *env) restartAgent(t *testing.T) {
	t.Helper()
	if out, err := e.kubectl("-n", agentNS, "rollout", "restart", "ds/"+agentDS); err != nil {
		t.Fatalf("rollout restart: %v: %s", err, out)
	}
	if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
		t.Fatalf("rollout status: %v: %s", err, out)
	}
}

func (e *env) waitNodeLabels(t *testing.T, node, redirect, capable string) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("node %s labelled %s/%s", node, redirect, capable), func() error {
		n, err := e.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		r, c := n.Labels[labelRedirect], n.Labels[labelCapable]
		if (redirect == "*" && !redirectBackends[r]) || (redirect != "*" && r != redirect) || c != capable {
			return fmt.Errorf("labels %s=%q %s=%q", labelRedirect, r, labelCapable, c)
		}
		return nil
	})
}

func (e *env) labelNode(t *testing.T, node, key, value string) {
	t.Helper()
	var patch string
	if value == "" {
		patch = fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, key)
	} else {
		patch = fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, value)
	}
	if _, err := e.cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label node %s: %v", node, err)
	}
}

// Scenarios 5 and 4: cooperative mode is refused until the admin allows it;
// then `none` pods run cooperative (counted in the metrics); one worker made
// incapable by the probe test knob flips its labels, takes `auto` pods
// cooperative with an Event, refuses `enforce-redirect` pods with an Event,
// and the README's nodeAffinity sends enforce-redirect pods to the capable
// worker.
func TestCooperativeAndIncapableNode(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "e2e-coop")
	t.Cleanup(func() { e.setCooperative(t, false) })
	// A pod annotation may only strengthen its namespace's mode: this
	// namespace allows none, so its pods may say none or auto.
	e.namespaceMode(t, ns, "none")

	// 5a: refused while allowCooperative is false
	e.createPod(t, ns, e.appPod("none-refused", "none", e.workers[0], true))
	msg := e.waitEvent(t, ns, "none-refused", "cooperative mode (no redirect rules) is not allowed")
	t.Logf("none pod refused: %s", msg)
	if p, _ := e.cs.CoreV1().Pods(ns).Get(context.Background(), "none-refused", metav1.GetOptions{}); p.Status.Phase == corev1.PodRunning {
		t.Fatalf("none pod is running although cooperative mode is not allowed")
	}
	_ = e.cs.CoreV1().Pods(ns).Delete(context.Background(), "none-refused", metav1.DeleteOptions{GracePeriodSeconds: int64p(0)})

	// 5b: allowed, runs cooperative, counted
	e.setCooperative(t, true)
	before, _ := metricSum(e.scrape(t, e.workers[0]), "authbridge_cooperative_pods_total", `reason="annotation"`)
	e.createPod(t, ns, e.appPod("none-allowed", "none", e.workers[0], true))
	e.waitRunning(t, ns, "none-allowed")
	t.Logf("none pod event: %s", e.waitEvent(t, ns, "none-allowed", "cooperative"))
	eventually(t, 30*time.Second, "cooperative pod counted", func() error {
		after, _ := metricSum(e.scrape(t, e.workers[0]), "authbridge_cooperative_pods_total", `reason="annotation"`)
		if after < before+1 {
			return fmt.Errorf("authbridge_cooperative_pods_total{reason=annotation} %v -> %v", before, after)
		}
		return nil
	})

	// 4: worker[1] made incapable by the test knob
	bad, good := e.workers[1], e.workers[0]
	e.makeIncapable(t, bad)
	e.waitNodeLabels(t, bad, "none", "false")

	// auto pod there: cooperative, with a Warning event saying so
	e.createPod(t, ns, e.appPod("auto-there", "auto", bad, true))
	e.waitRunning(t, ns, "auto-there")
	t.Logf("auto pod on incapable node: %s", e.waitEvent(t, ns, "auto-there", "reason auto-incapable-node"))
	srvIP, _ := e.server(t, ns, good)
	if out, err := e.podExec(ns, "auto-there", "app", "/netcheck", "get", "http://"+srvIP+"/"); err != nil {
		t.Fatalf("cooperative pod's direct call: %v: %s", err, out)
	}
	if n, err := e.recordCount(ns, "auto-there"); err != nil || n != 0 {
		t.Fatalf("cooperative pod's call went through the sidecar (%d records, %v): it must have no rules", n, err)
	}

	// enforce-redirect pod there: does not start, the Event says why
	e.createPod(t, ns, e.appPod("enforce-there", "enforce-redirect", bad, true))
	t.Logf("enforce-redirect pod on incapable node: %s", e.waitEvent(t, ns, "enforce-there", "no redirect backend works on this node"))
	if p, _ := e.cs.CoreV1().Pods(ns).Get(context.Background(), "enforce-there", metav1.GetOptions{}); p.Status.Phase == corev1.PodRunning {
		t.Fatalf("enforce-redirect pod runs on the incapable node")
	}

	// with the README's nodeAffinity it lands on the capable worker
	p := e.appPod("enforce-affinity", "enforce-redirect", "", true)
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: labelCapable, Operator: corev1.NodeSelectorOpIn, Values: []string{"true"}}},
		}}},
	}}
	e.createPod(t, ns, p)
	got := e.waitRunning(t, ns, "enforce-affinity")
	if got.Spec.NodeName != good {
		t.Fatalf("enforce-redirect pod with the capability affinity ran on %s, want %s", got.Spec.NodeName, good)
	}
	if err := e.redirectWorks(ns, "enforce-affinity", "http://"+srvIP+"/"); err != nil {
		t.Fatal(err)
	}
}

// makeIncapable moves node from the main agent DaemonSet to a clone whose
// agent has AUTHBRIDGE_PROBE_FORCE_FAIL=all (every backend fails the probe),
// and undoes it at cleanup.
func (e *env) makeIncapable(t *testing.T, node string) {
	t.Helper()
	ctx := context.Background()
	ds, err := e.cs.AppsV1().DaemonSets(agentNS).Get(ctx, agentDS, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get agent DaemonSet: %v", err)
	}
	clone := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: agentDS + "-force-fail", Namespace: agentNS, Labels: ds.Labels},
		Spec:       *ds.Spec.DeepCopy(),
	}
	sel := clone.Spec.Selector.DeepCopy()
	sel.MatchLabels["e2e-probe-force-fail"] = "true"
	clone.Spec.Selector = sel
	clone.Spec.Template.Labels["e2e-probe-force-fail"] = "true"
	clone.Spec.Template.Spec.Affinity = nil
	clone.Spec.Template.Spec.NodeSelector = map[string]string{forceFailLabel: "all"}
	for i := range clone.Spec.Template.Spec.Containers {
		c := &clone.Spec.Template.Spec.Containers[i]
		c.Env = append(c.Env, corev1.EnvVar{Name: forceFailEnv, Value: "all"})
	}
	t.Cleanup(func() {
		_ = e.cs.AppsV1().DaemonSets(agentNS).Delete(context.Background(), clone.Name, metav1.DeleteOptions{})
		eventually(t, 2*time.Minute, "force-fail agent gone", func() error {
			pods, err := e.cs.CoreV1().Pods(agentNS).List(context.Background(), metav1.ListOptions{LabelSelector: "e2e-probe-force-fail=true"})
			if err != nil || len(pods.Items) > 0 {
				return fmt.Errorf("%d pods left (%v)", len(pods.Items), err)
			}
			return nil
		})
		e.labelNode(t, node, forceFailLabel, "")
		if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
			t.Errorf("agent back on %s: %v: %s", node, err, out)
		}
		e.waitNodeLabels(t, node, "*", "true")
	})
	e.labelNode(t, node, forceFailLabel, "all")
	if _, err := e.cs.AppsV1().DaemonSets(agentNS).Create(ctx, clone, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create force-fail agent DaemonSet: %v", err)
	}
	if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+clone.Name, "--timeout=300s"); err != nil {
		t.Fatalf("force-fail agent rollout: %v: %s", err, out)
	}
}

// Scenario 6: the primary CNI rewrites its conflist on a node (as kindnet,
// Calico... do): the plugin entry is back within 1 s and new pods still get
// rules.
func TestConflistRewriteReinserted(t *testing.T) {
	e := newEnv(t)
	node := e.workers[0]
	eventually(t, time.Minute, "plugin in conflist", func() error {
		types, err := conflistPlugins(t, node)
		if err != nil || !hasAuthbridgePlugin(types) {
			return fmt.Errorf("%v %v", types, err)
		}
		return nil
	})
	// Rewrite it the way a primary CNI does (write a temp file, rename),
	// without our entry, then time, on the node itself, until it is back.
	script := `set -e
f=` + primaryConflist + `
jq 'del(.plugins[] | select(.type | contains("authbridge")))' "$f" > "$f.e2e"
grep -q authbridge "$f.e2e" && { echo "jq did not remove the entry"; exit 2; }
start=$(date +%s%N)
mv "$f.e2e" "$f"
while ! grep -q authbridge "$f"; do
  [ $(( $(date +%s%N) - start )) -gt 10000000000 ] && { echo "timeout"; exit 3; }
  sleep 0.005
done
echo $(( ($(date +%s%N) - start) / 1000000 ))`
	out, err := nodeExec(t, node, "sh", "-c", script)
	if err != nil {
		t.Fatalf("rewrite conflist on %s: %v: %s", node, err, out)
	}
	ms, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("unexpected output %q", out)
	}
	t.Logf("FIGURE conflist re-insertion after a rewrite: %d ms", ms)
	writeFigure("conflist-reinsert-ms", strconv.Itoa(ms))
	if ms > 1000 {
		t.Fatalf("plugin entry back after %d ms, want within 1000 ms", ms)
	}
	types, err := conflistPlugins(t, node)
	if err != nil || !hasAuthbridgePlugin(types) {
		t.Fatalf("after re-insertion: %v %v", types, err)
	}
	ns := e.namespace(t, "e2e-rewrite")
	srvIP, _ := e.server(t, ns, e.workers[1])
	e.createPod(t, ns, e.appPod("after-rewrite", "enforce-redirect", node, true))
	e.waitRunning(t, ns, "after-rewrite")
	if err := e.redirectWorks(ns, "after-rewrite", "http://"+srvIP+"/"); err != nil {
		t.Fatal(err)
	}
}

func writeFigure(name, value string) {
	if dir := os.Getenv("E2E_LOGS"); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, "figures.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %s %s\n", time.Now().UTC().Format(time.RFC3339), name, value)
			f.Close()
		}
	}
}

// Scenario 7: the agent DaemonSet deleted and recreated (a reinstall: the
// deletion is a real uninstall, see issue 9's TestSurvivesRollout for an
// upgrade that keeps the plugin): running pods keep working, new pods get
// rules; the agent uninstalled: the conflist is clean and the binary is
// removed after the entry (never an entry without its binary).
func TestAgentUpgradeAndUninstall(t *testing.T) {
	e := newEnv(t)
	node := e.workers[0]
	ns := e.namespace(t, "e2e-upgrade")
	srvIP, _ := e.server(t, ns, e.workers[1])
	url := "http://" + srvIP + "/"
	e.createPod(t, ns, e.appPod("before", "enforce-redirect", node, true))
	e.waitRunning(t, ns, "before")
	if err := e.redirectWorks(ns, "before", url); err != nil {
		t.Fatal(err)
	}
	rendered := renderedInstall()
	if _, err := os.Stat(rendered); err != nil {
		t.Fatalf("rendered agent manifests (from install-agent.sh): %v", err)
	}
	types, err := conflistPlugins(t, node)
	if err != nil || !hasAuthbridgePlugin(types) {
		t.Fatalf("conflist before: %v %v", types, err)
	}
	bin := "/opt/cni/bin/" + types[len(types)-1]

	// upgrade: delete the DaemonSet, recreate it
	e.deleteAgentDS(t)
	if out, err := e.kubectl("apply", "-f", rendered); err != nil {
		t.Fatalf("re-apply agent: %v: %s", err, out)
	}
	if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
		t.Fatalf("agent rollout: %v: %s", err, out)
	}
	if err := e.redirectWorks(ns, "before", url); err != nil {
		t.Fatalf("running pod after the upgrade: %v", err)
	}
	e.createPod(t, ns, e.appPod("after", "enforce-redirect", node, true))
	e.waitRunning(t, ns, "after")
	if err := e.redirectWorks(ns, "after", url); err != nil {
		t.Fatalf("new pod after the upgrade: %v", err)
	}

	// uninstall: watch the node while the agent goes; state "entry without
	// binary" must never be seen. The binary is sampled before the entry:
	// sampled the other way round, an entry seen just before both were
	// removed and a binary looked at just after reads "10" although both
	// went in the right order (the one "10" seen in a run of 2026-11-30).
	// This way a "10" means the entry was still there after the binary
	// was gone.
	watch := exec.Command("docker", "exec", node, "sh", "-c", fmt.Sprintf(`
for i in $(seq 6000); do
  b=0; [ -e %[2]s ] && b=1
  e=0; grep -q authbridge %[1]s && e=1
  echo "$e$b"
  [ "$e$b" = 00 ] && exit 0
  sleep 0.01
done; exit 1`, primaryConflist, bin))
	var watchOut strings.Builder
	watch.Stdout = &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := e.kubectl("apply", "-f", rendered); err != nil {
			t.Errorf("reinstall agent: %v: %s", err, out)
		}
		if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
			t.Errorf("agent rollout after reinstall: %v: %s", err, out)
		}
	})
	e.deleteAgentDS(t)
	if err := watch.Wait(); err != nil {
		t.Fatalf("entry and binary not both gone within 60 s: states %s", compress(watchOut.String()))
	}
	states := compress(watchOut.String())
	t.Logf("uninstall states on %s (entry,binary): %s", node, states)
	if strings.Contains(states, "10") {
		t.Fatalf("saw the conflist entry without its binary: %s", states)
	}
	for _, n := range e.nodes() {
		types, err := conflistPlugins(t, n)
		if err != nil || hasAuthbridgePlugin(types) {
			t.Fatalf("conflist on %s after uninstall: %v %v", n, types, err)
		}
		if out, err := nodeExec(t, n, "test", "!", "-e", bin); err != nil {
			t.Fatalf("%s still present on %s: %s", bin, n, out)
		}
	}
}

// compress turns "11\n11\n01\n00" into "11 -> 01 -> 00".
func compress(s string) string {
	var out []string
	for _, l := range strings.Fields(s) {
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return strings.Join(out, " -> ")
}

func (e *env) deleteAgentDS(t *testing.T) {
	t.Helper()
	fg := metav1.DeletePropagationForeground
	if err := e.cs.AppsV1().DaemonSets(agentNS).Delete(context.Background(), agentDS, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatalf("delete agent DaemonSet: %v", err)
	}
	eventually(t, 2*time.Minute, "agent DaemonSet and pods gone", func() error {
		if _, err := e.cs.AppsV1().DaemonSets(agentNS).Get(context.Background(), agentDS, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("DaemonSet still there")
		}
		pods, err := e.cs.CoreV1().Pods(agentNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=authbridge-node"})
		if err != nil || len(pods.Items) > 0 {
			return fmt.Errorf("%d agent pods left (%v)", len(pods.Items), err)
		}
		return nil
	})
}

// Scenario 8: every agent's metrics: probe results, the ADD latency
// histogram and pods per mode.
func TestAgentMetrics(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "e2e-metrics")
	for _, w := range e.workers {
		name := "m-" + w[len(w)-1:]
		e.createPod(t, ns, e.appPod(name, "enforce-redirect", w, true))
		e.waitRunning(t, ns, name)
	}
	for _, n := range e.nodes() {
		m := e.scrape(t, n)
		works, ok := metricSum(m, "authbridge_probe_backend_works")
		if !ok || works < 1 {
			t.Errorf("%s: authbridge_probe_backend_works missing or no backend works (%v)", n, works)
		}
		if _, ok := metricSum(m, "authbridge_probe_duration_seconds_count"); !ok {
			t.Errorf("%s: authbridge_probe_duration_seconds missing", n)
		}
		if n == e.controlNode {
			continue // no AuthBridge pods there
		}
		if c, ok := metricSum(m, "authbridge_cni_add_duration_seconds_count"); !ok || c < 1 {
			t.Errorf("%s: authbridge_cni_add_duration_seconds histogram has no ADD (%v)", n, c)
		}
		if _, ok := metricSum(m, "authbridge_cni_add_duration_seconds_bucket", `le="`); !ok {
			t.Errorf("%s: authbridge_cni_add_duration_seconds has no buckets", n)
		}
		if c, ok := metricSum(m, "authbridge_cni_pods_total", `mode="enforce-redirect"`); !ok || c < 1 {
			t.Errorf("%s: authbridge_cni_pods_total{mode=enforce-redirect} = %v", n, c)
		}
		sum, _ := metricSum(m, "authbridge_cni_add_duration_seconds_sum")
		cnt, _ := metricSum(m, "authbridge_cni_add_duration_seconds_count")
		t.Logf("%s: probe works=%v, ADDs=%v (mean %.1f ms), pods enforce-redirect=%v", n, works, cnt, 1000*sum/max(cnt, 1),
			func() float64 { v, _ := metricSum(m, "authbridge_cni_pods_total", `mode="enforce-redirect"`); return v }())
	}
}
