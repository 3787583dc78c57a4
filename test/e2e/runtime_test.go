//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The scenarios of issue 15: the node runtime is containerd 2.x
// (hack/kind-node-image, CONTAINERD=2) with a cniVersion 1.1.0 conflist, so
// the runtime itself calls CNI STATUS: its CRI Status, polled by the kubelet
// every 5 s, runs STATUS on every plugin of the chain and sets the node's
// NetworkReady from the result. A chained plugin whose STATUS fails takes the
// whole node out; ours must not.

// networkReady reads NetworkReady from the runtime's own status on node
// (crictl info: the condition the kubelet turns into the Node's Ready).
func networkReady(t *testing.T, node string) (bool, string) {
	t.Helper()
	out, err := nodeExec(t, node, "sh", "-c", `crictl info | jq -r '.status.conditions[] | select(.type=="NetworkReady") | "\(.status) \(.reason) \(.message)"'`)
	if err != nil {
		return false, fmt.Sprintf("crictl info: %v: %s", err, out)
	}
	out = strings.TrimSpace(out)
	return strings.HasPrefix(out, "true"), out
}

func nodeReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.Reason + ": " + c.Message
		}
	}
	return false, "no Ready condition"
}

// TestRuntimeCallsStatus (15b): the runtime's STATUS calls reach the plugin
// at the kubelet's cadence (counted by the agent as
// authbridge_cni_operations_total{op="STATUS"}) and leave no line in the
// plugin's log at the default level (successful STATUS logs at debug).
func TestRuntimeCallsStatus(t *testing.T) {
	e := newEnv(t)
	const window = 30 * time.Second
	for _, w := range e.workers {
		before, _ := metricSum(e.scrape(t, w), "authbridge_cni_operations_total", `op="STATUS"`, `result="success"`)
		logBefore, _ := nodeExec(t, w, "sh", "-c", "grep -c STATUS /var/log/authbridge-cni.log || true")
		time.Sleep(window)
		after, _ := metricSum(e.scrape(t, w), "authbridge_cni_operations_total", `op="STATUS"`, `result="success"`)
		logAfter, _ := nodeExec(t, w, "sh", "-c", "grep -c STATUS /var/log/authbridge-cni.log || true")
		calls := after - before
		t.Logf("%s: %v successful STATUS calls in %v (kubelet polls the runtime every 5 s)", w, calls, window)
		writeFigure("status-calls-per-30s-"+w, fmt.Sprint(calls))
		if calls < 3 {
			t.Errorf("%s: %v STATUS calls in %v, want the runtime's periodic calls (about 6)", w, calls, window)
		}
		if strings.TrimSpace(logBefore) != strings.TrimSpace(logAfter) {
			t.Errorf("%s: the plugin log gained STATUS lines (%s -> %s) at the default level", w, strings.TrimSpace(logBefore), strings.TrimSpace(logAfter))
		}
		if ok, msg := networkReady(t, w); !ok {
			t.Errorf("%s: NetworkReady false: %s", w, msg)
		}
	}
}

// TestIncapableNodeStaysReady (15a): on a worker where no redirect backend
// works (the probe test knob), the runtime keeps NetworkReady true and the
// Node stays Ready throughout, plain pods start there, enforce-redirect pods
// are refused at ADD with the clear error and auto pods run cooperatively.
func TestIncapableNodeStaysReady(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "e2e-status")
	// A pod annotation may only strengthen its namespace's mode: the
	// namespace allows auto (its enforce-redirect pod is stronger).
	e.namespaceMode(t, ns, "auto")
	t.Cleanup(func() { e.setCooperative(t, false) })
	e.setCooperative(t, true)
	bad := e.workers[1]
	e.makeIncapable(t, bad)
	e.waitNodeLabels(t, bad, "none", "false")

	// Watch the node for a minute while pods of every kind are created on it.
	stop := make(chan struct{})
	problems := make(chan string, 100)
	go func() {
		for {
			select {
			case <-stop:
				close(problems)
				return
			case <-time.After(2 * time.Second):
			}
			if ok, msg := networkReady(t, bad); !ok {
				problems <- "NetworkReady false: " + msg
			}
			n, err := e.cs.CoreV1().Nodes().Get(context.Background(), bad, metav1.GetOptions{})
			if err == nil {
				if ok, msg := nodeReady(n); !ok {
					problems <- "Node not Ready: " + msg
				}
			}
		}
	}()
	start := time.Now()
	e.createPod(t, ns, e.appPod("plain", "", bad, false))
	e.waitRunning(t, ns, "plain")
	e.createPod(t, ns, e.appPod("auto", "auto", bad, true))
	e.waitRunning(t, ns, "auto")
	t.Logf("auto pod: %s", e.waitEvent(t, ns, "auto", "reason auto-incapable-node"))
	e.createPod(t, ns, e.appPod("enforce", "enforce-redirect", bad, true))
	t.Logf("enforce-redirect pod: %s", e.waitEvent(t, ns, "enforce", "no redirect backend works on this node"))
	if rest := time.Minute - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	n, first := 0, map[string]bool{}
	var distinct []string
	for p := range problems {
		n++
		if !first[p] && len(distinct) < 3 {
			first[p] = true
			distinct = append(distinct, p)
		}
	}
	if n > 0 {
		t.Fatalf("%s left Ready while incapable (%d bad samples); first distinct: %s", bad, n, strings.Join(distinct, " | "))
	}
	if p, _ := e.cs.CoreV1().Pods(ns).Get(context.Background(), "enforce", metav1.GetOptions{}); p.Status.Phase == corev1.PodRunning {
		t.Fatal("enforce-redirect pod runs on the incapable node")
	}
}
