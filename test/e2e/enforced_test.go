//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Scenarios of issues 10 (in-place repair, drift) and 17 (the pod condition
// and readiness gate). Written for make e2e; see test/e2e/README.md for
// whether they have been run.

const (
	conditionEnforced = "authbridge.kagenti.io/egress-enforced"
	// verifyInterval is the agent's default (the e2e overlay keeps it).
	verifyInterval = 30 * time.Second
)

// gatedPod is appPod with the readiness gate the injector adds.
func (e *env) gatedPod(name, node string) *corev1.Pod {
	p := e.appPod(name, "enforce-redirect", node, true)
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: conditionEnforced}}
	return p
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// waitEnforced waits for the pod's egress-enforced condition to be True
// with reason Verified, transitioned after since; it returns the pod.
func (e *env) waitEnforced(t *testing.T, ns, name string, since time.Time) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, 3*time.Minute, "condition "+conditionEnforced+" True on "+ns+"/"+name, func() error {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := podCondition(p, conditionEnforced)
		if c == nil || c.Status != corev1.ConditionTrue || c.Reason != "Verified" || c.LastTransitionTime.Time.Before(since.Truncate(time.Second)) {
			return fmt.Errorf("condition %+v; events %s", c, e.podEvents(ns, name))
		}
		pod = p
		return nil
	})
	return pod
}

// podNetns returns the pod's network namespace path on its node, from the
// runtime (crictl inspectp), as the host sees it.
func (e *env) podNetns(t *testing.T, node, ns, name string) string {
	t.Helper()
	out, err := nodeExec(t, node, "sh", "-c", fmt.Sprintf(
		`id=$(crictl pods --namespace %s --name '^%s$' --state ready -q | head -1) && crictl inspectp "$id" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type=="network") | .path'`, ns, name))
	path := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(path, "/") {
		t.Fatalf("netns of %s/%s on %s: %v: %s", ns, name, node, err, out)
	}
	return path
}

// flushRules deletes the pod's rules from the node the way a NET_ADMIN
// container (kubectl debug --profile=netadmin) or root on the node would:
// every backend's tables in the pod's netns.
func (e *env) flushRules(t *testing.T, node, netns string) {
	t.Helper()
	out, err := nodeExec(t, node, "nsenter", "--net="+netns, "sh", "-c",
		"nft flush ruleset; iptables-nft -t nat -F; iptables-nft -t filter -F; iptables-legacy -t nat -F 2>/dev/null; iptables-legacy -t filter -F 2>/dev/null; nft list ruleset | grep -c authbridge || true")
	if err != nil {
		t.Fatalf("flush rules in %s on %s: %v: %s", netns, node, err, out)
	}
	if strings.TrimSpace(lastLine(out)) != "0" {
		t.Fatalf("the authbridge table survived the flush: %s", out)
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// Scenario 10a: a pod created while the plugin entry is absent (the agent
// uninstalled) runs without rules; once the agent is back it is repaired in
// place: the same pod UID, now redirected, with EgressRulesMissing and
// EgressRulesRepaired and the condition True. It carries the readiness
// gate, so it is not Ready (no Service traffic) until then (issue 17).
func TestRepairInPlaceAfterAgentGap(t *testing.T) {
	e := newEnv(t)
	node := e.workers[0]
	ns := e.namespace(t, "e2e-repair")
	srvIP, _ := e.server(t, ns, e.workers[1])
	url := "http://" + srvIP + "/"
	rendered := renderedInstall()
	if _, err := os.Stat(rendered); err != nil {
		t.Fatalf("rendered agent manifests (from install-agent.sh): %v", err)
	}
	reinstall := func() {
		if out, err := e.kubectl("apply", "-f", rendered); err != nil {
			t.Fatalf("re-apply agent: %v: %s", err, out)
		}
		if out, err := e.kubectl("-n", agentNS, "rollout", "status", "ds/"+agentDS, "--timeout=300s"); err != nil {
			t.Fatalf("agent rollout: %v: %s", err, out)
		}
	}
	e.deleteAgentDS(t)
	t.Cleanup(func() {
		if _, err := e.cs.AppsV1().DaemonSets(agentNS).Get(context.Background(), agentDS, metav1.GetOptions{}); err != nil {
			reinstall()
		}
	})
	eventually(t, time.Minute, "entry gone from "+node, func() error {
		types, err := conflistPlugins(t, node)
		if err != nil || hasAuthbridgePlugin(types) {
			return fmt.Errorf("%v %v", types, err)
		}
		return nil
	})
	// A bare pod (no controller): deleting it would lose it.
	created := e.createPod(t, ns, e.gatedPod("gap", node))
	eventually(t, defaultWaitTimeout, "gap pod running", func() error {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), "gap", metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %v %v", p.Status.Phase, err)
		}
		if c := podCondition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
			return fmt.Errorf("pod Ready without the egress-enforced condition: the readiness gate is not honoured")
		}
		return nil
	})
	if err := e.redirectWorks(ns, "gap", url); err == nil {
		t.Fatal("the gap pod is redirected before any agent ran: the test would prove nothing")
	}

	reinstall()
	agentBack := time.Now()
	ev := e.waitEvent(t, ns, "gap", "programmed and verified")
	t.Logf("%s", ev)
	p := e.waitEnforced(t, ns, "gap", agentBack)
	if p.UID != created.UID {
		t.Fatalf("pod UID %s, want %s: the pod was recreated, not repaired in place", p.UID, created.UID)
	}
	repaired := time.Since(agentBack)
	t.Logf("FIGURE in-place repair after the agent came back: %s (sandbox grace 60 s + check every 30 s)", repaired.Round(time.Second))
	writeFigure("repair-in-place-s", fmt.Sprintf("%.0f", repaired.Seconds()))
	e.waitRunning(t, ns, "gap") // Ready now: the gate is satisfied
	if err := e.redirectWorks(ns, "gap", url); err != nil {
		t.Fatalf("after the repair: %v", err)
	}
	if !strings.Contains(e.podEvents(ns, "gap"), "EgressRulesMissing") {
		t.Errorf("no EgressRulesMissing Event: %s", e.podEvents(ns, "gap"))
	}
	if v, _ := metricSum(e.scrape(t, node), "authbridge_rules_repairs_total", `result="success"`); v < 1 {
		t.Errorf("authbridge_rules_repairs_total{result=success} = %v on %s", v, node)
	}
}

// Scenario 10b + 17: the rules of a running, Ready pod with the readiness
// gate are deleted from the node (nsenter into its netns, as root on the
// node or a NET_ADMIN debug container would): within one verifyInterval
// the agent finds it (EgressRulesDrifted), the condition goes False
// (RulesDrifted) and back to True once re-applied, and the pod is
// redirected again.
func TestDriftRepairedWithinInterval(t *testing.T) {
	e := newEnv(t)
	node := e.workers[0]
	ns := e.namespace(t, "e2e-drift")
	srvIP, _ := e.server(t, ns, e.workers[1])
	url := "http://" + srvIP + "/"
	e.createPod(t, ns, e.gatedPod("drift", node))
	e.waitRunning(t, ns, "drift")
	e.waitEnforced(t, ns, "drift", time.Time{})
	svc, err := e.cs.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "drift"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"e2e": "drift"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8081)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "drift pod ready in its EndpointSlice", func() error {
		ready, err := e.endpointReady(ns, svc.Name)
		if err != nil || !ready {
			return fmt.Errorf("ready %v %v", ready, err)
		}
		return nil
	})
	// Record the Ready transitions the kubelet writes while the rules are
	// broken (the False window lasts from detection to re-apply).
	w, err := e.cs.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "metadata.name=drift"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var readyFalse, condFalse atomic.Bool
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if c := podCondition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionFalse {
				readyFalse.Store(true)
			}
			if c := podCondition(p, conditionEnforced); c != nil && c.Status == corev1.ConditionFalse && c.Reason == "RulesDrifted" {
				condFalse.Store(true)
			}
		}
	}()

	e.flushRules(t, node, e.podNetns(t, node, ns, "drift"))
	flushed := time.Now()
	if err := e.redirectWorks(ns, "drift", url); err == nil {
		t.Log("note: the app's call was redirected right after the flush (the agent was faster than the check)")
	}
	e.waitEvent(t, ns, "drift", "re-applied and verified")
	found := time.Since(flushed)
	e.waitEnforced(t, ns, "drift", flushed)
	t.Logf("FIGURE drift found and re-applied after %s (verifyInterval %s); Ready observed False meanwhile: %v, condition RulesDrifted observed: %v",
		found.Round(time.Second), verifyInterval, readyFalse.Load(), condFalse.Load())
	writeFigure("drift-repair-s", fmt.Sprintf("%.0f", found.Seconds()))
	if found > verifyInterval+15*time.Second {
		t.Errorf("drift repaired after %s, want within one verifyInterval (%s) plus the Event's delivery", found, verifyInterval)
	}
	if err := e.redirectWorks(ns, "drift", url); err != nil {
		t.Fatalf("after the re-apply: %v", err)
	}
	if v, _ := metricSum(e.scrape(t, node), "authbridge_rules_drift_total"); v < 1 {
		t.Errorf("authbridge_rules_drift_total = %v on %s", v, node)
	}
}

// endpointReady reports whether the Service's EndpointSlices hold a ready
// endpoint.
func (e *env) endpointReady(ns, svc string) (bool, error) {
	l, err := e.cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return false, err
	}
	for _, s := range l.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				return true, nil
			}
		}
	}
	return false, nil
}

// Scenario 17 figure: time from sandbox (PodReadyToStartContainers) to the
// condition True for pods with the gate (1 s resolution: the API's
// timestamps), median and p99; `kubectl get pod -o wide` shows the gate.
func TestTimeToEnforced(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "e2e-t2e")
	const n = 10
	for i := 0; i < n; i++ {
		e.createPod(t, ns, e.gatedPod(fmt.Sprintf("t%d", i), e.workers[i%2]))
	}
	var secs []float64
	for i := 0; i < n; i++ {
		p := e.waitEnforced(t, ns, fmt.Sprintf("t%d", i), time.Time{})
		e.waitRunning(t, ns, p.Name)
		// Pod creation to True, both on the API server's clock as stored
		// (1 s resolution). The kubelet's PodReadyToStartContainers is not
		// used: it reaches the API server when the kubelet syncs status,
		// often after the agent has already written True.
		c := podCondition(p, conditionEnforced)
		secs = append(secs, c.LastTransitionTime.Sub(p.CreationTimestamp.Time).Seconds())
	}
	sort.Float64s(secs)
	med, p99 := secs[len(secs)/2], secs[len(secs)-1]
	t.Logf("FIGURE pod created -> egress-enforced True, %d pods: median %.0f s, p99 (max of %d) %.0f s", n, med, n, p99)
	writeFigure("time-to-enforced-median-s", fmt.Sprintf("%.0f", med))
	writeFigure("time-to-enforced-p99-s", fmt.Sprintf("%.0f", p99))
	out, err := e.kubectl("get", "pod", "-n", ns, "t0", "-o", "wide")
	if err != nil || !strings.Contains(out, "1/1") {
		t.Errorf("kubectl get pod -o wide does not show the satisfied gate (READINESS GATES 1/1): %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
