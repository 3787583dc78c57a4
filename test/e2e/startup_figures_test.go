//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// proxyInitScript is what a proxy-init style init container does (Istio's
// istio-init, Linkerd's proxy-init): a handful of nat rules redirecting the
// pod's TCP egress to the sidecar, exempting the proxy's UID.
const proxyInitScript = `set -e
iptables -t nat -N PROXY_OUTPUT
iptables -t nat -A PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A PROXY_OUTPUT -d 127.0.0.1/32 -j RETURN
iptables -t nat -A PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 8082
iptables -t nat -A OUTPUT -p tcp -j PROXY_OUTPUT
iptables -A OUTPUT -p udp --dport 53 -j ACCEPT
iptables -A OUTPUT -p udp -m owner ! --uid-owner 1337 -j DROP`

// TestPodStartTimeFigures measures, in the same cluster and on the same
// worker, the time from Create to Ready for three kinds of pods with the same
// two containers: plain (no rules), this plugin's rules (enforce-redirect),
// and a privileged proxy-init style init container running iptables. The
// kinds are interleaved so drift in the machine's load hits all three alike.
// E2E_FIGURES_N sets the pods per kind (default 20).
func TestPodStartTimeFigures(t *testing.T) {
	e := newEnv(t)
	n := 20
	if v := os.Getenv("E2E_FIGURES_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("E2E_FIGURES_N=%q: want a positive integer", v)
		}
	}
	ns := e.namespace(t, "e2e-figures")
	node := e.workers[0]
	kinds := []string{"plain", "plugin-rules", "privileged-init"}
	times := map[string][]time.Duration{} // Create -> Ready seen by a watch (kubelet's 1 s relist shows)
	cri := map[string][]time.Duration{}   // sandbox created -> last container started, CRI's ns clock
	for i := 0; i < n; i++ {
		for _, k := range kinds {
			name := fmt.Sprintf("%s-%d", k, i)
			var p *corev1.Pod
			switch k {
			case "plain":
				p = e.appPod(name, "", node, true)
				p.Spec.Containers[1].Name = "proxy" // not recognised as AuthBridge: no rules
			case "plugin-rules":
				p = e.appPod(name, "enforce-redirect", node, true)
			case "privileged-init":
				p = e.appPod(name, "", node, true)
				p.Spec.Containers[1].Name = "proxy"
				p.Spec.InitContainers = []corev1.Container{{
					Name: "proxy-init", Image: e.toolsImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/bin/sh", "-c", proxyInitScript},
					SecurityContext: &corev1.SecurityContext{
						Privileged: boolp(true), RunAsUser: int64p(0),
						Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}},
					},
				}}
			}
			if k != "plugin-rules" {
				// Not AuthBridge pods: no attachment (multus variant), only
				// the cluster network through Multus.
				delete(p.Annotations, attachmentAnnotation)
			}
			d := e.timeToReady(t, ns, p)
			times[k] = append(times[k], d)
			cri[k] = append(cri[k], criStartup(t, node, ns, name))
			_ = e.cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: int64p(0)})
		}
	}
	res := map[string]map[string]float64{}
	for _, k := range kinds {
		res[k+"/create-to-ready"] = summarise(t, k+" create->ready (watch)", times[k])
		res[k+"/sandbox-to-started"] = summarise(t, k+" sandbox->started (CRI)", cri[k])
	}
	if dir := os.Getenv("E2E_LOGS"); dir != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		_ = os.WriteFile(filepath.Join(dir, "figures.json"), b, 0o644)
	}
}

func summarise(t *testing.T, what string, in []time.Duration) map[string]float64 {
	ds := append([]time.Duration(nil), in...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	med := ds[len(ds)/2]
	if len(ds)%2 == 0 {
		med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	p90 := ds[(len(ds)*9+9)/10-1]
	t.Logf("FIGURE %-42s n=%d median=%.3fs p90=%.3fs min=%.3fs max=%.3fs", what, len(ds), med.Seconds(), p90.Seconds(), ds[0].Seconds(), ds[len(ds)-1].Seconds())
	return map[string]float64{"n": float64(len(ds)), "median_s": med.Seconds(), "p90_s": p90.Seconds(), "min_s": ds[0].Seconds(), "max_s": ds[len(ds)-1].Seconds()}
}

// criStartup reads, from the node's CRI, the time from the pod sandbox's
// creation (before the CNI chain runs) to the start of its last container:
// the part of pod start that networking setup and init containers affect,
// with nanosecond timestamps.
func criStartup(t *testing.T, node, ns, name string) time.Duration {
	t.Helper()
	crictl := func(args ...string) []byte {
		out, err := exec.Command("docker", append([]string{"exec", node, "crictl"}, args...)...).Output()
		if err != nil {
			t.Fatalf("crictl %v on %s: %v", args, node, err)
		}
		return out
	}
	var pods struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(crictl("pods", "-o", "json", "--namespace", ns, "--name", "^"+name+"$", "--state", "ready"), &pods); err != nil || len(pods.Items) != 1 {
		t.Fatalf("sandbox of %s/%s: %d found (%v)", ns, name, len(pods.Items), err)
	}
	var sb struct {
		Status struct {
			CreatedAt time.Time `json:"createdAt"`
		} `json:"status"`
	}
	if err := json.Unmarshal(crictl("inspectp", pods.Items[0].ID), &sb); err != nil {
		t.Fatalf("inspectp: %v", err)
	}
	var last time.Time
	for _, id := range strings.Fields(string(crictl("ps", "-q", "--pod", pods.Items[0].ID, "--state", "running"))) {
		var c struct {
			Status struct {
				StartedAt time.Time `json:"startedAt"`
			} `json:"status"`
		}
		if err := json.Unmarshal(crictl("inspect", id), &c); err != nil {
			t.Fatalf("inspect %s: %v", id, err)
		}
		if c.Status.StartedAt.After(last) {
			last = c.Status.StartedAt
		}
	}
	if last.IsZero() {
		t.Fatalf("no running container in sandbox of %s/%s", ns, name)
	}
	return last.Sub(sb.Status.CreatedAt)
}

// timeToReady creates the pod and returns the wall time until a watch sees
// it Ready.
func (e *env) timeToReady(t *testing.T, ns string, p *corev1.Pod) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := e.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", p.Name).String()})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	start := time.Now()
	e.createPod(t, ns, p)
	for ev := range w.ResultChan() {
		if ev.Type != watch.Added && ev.Type != watch.Modified {
			continue
		}
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return time.Since(start)
			}
		}
	}
	t.Fatalf("pod %s/%s not ready within 3m: %s", ns, p.Name, e.podEvents(ns, p.Name))
	return 0
}
