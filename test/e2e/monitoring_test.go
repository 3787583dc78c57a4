//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// e2eFor replaces every alert's `for` in the e2e's copy of the rules, so a
// firing alert shows in a minute, not ten; the expressions are the shipped
// ones.
const e2eFor = "30s"

// prometheus is a real Prometheus (built from the module proxy by
// hack/build-tools.sh, run on this host, which reaches the kind nodes'
// addresses) scraping every agent with manifests/monitoring/prometheus.yaml
// (the ServiceMonitor's relabelling) and loading the shipped alerts.
type prometheus struct {
	base string
}

func startPrometheus(t *testing.T, e *env) *prometheus {
	t.Helper()
	bin := mustEnv(t, "E2E_PROMETHEUS")
	root := mustEnv(t, "E2E_REPO_ROOT")
	mon := filepath.Join(root, "manifests", "monitoring")

	// The metrics Service the ServiceMonitor and prometheus.yaml select (the
	// cluster has no Prometheus Operator CRDs, so only the Service).
	sm, err := os.ReadFile(filepath.Join(mon, "servicemonitor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc, _, _ := strings.Cut(string(sm), "\n---\n")
	if out, err := e.kubectlStdin(svc, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply metrics Service: %v: %s", err, out)
	}

	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(mon, "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := strings.Replace(string(cfg), "  - role: endpointslice\n", "  - role: endpointslice\n    kubeconfig_file: "+e.kubeconfig+"\n", 1)
	c = strings.NewReplacer("scrape_interval: 30s", "scrape_interval: 5s", "evaluation_interval: 30s", "evaluation_interval: 5s").Replace(c)
	if c == string(cfg) {
		t.Fatal("prometheus.yaml changed shape: cannot point it at the kind cluster")
	}
	rules, err := os.ReadFile(filepath.Join(mon, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules = regexp.MustCompile(`(?m)^(\s+for: )\S+$`).ReplaceAll(rules, []byte("${1}"+e2eFor))
	for name, b := range map[string][]byte{"prometheus.yaml": []byte(c), "alerts.yaml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(os.Getenv("E2E_LOGS"), "prometheus.log"))
	if err != nil {
		logf, _ = os.Create(filepath.Join(dir, "prometheus.log"))
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yaml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	p := &prometheus{base: "http://" + addr}
	eventually(t, time.Minute, "prometheus ready", func() error {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	return p
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query through the HTTP API.
func (p *prometheus) query(q string) ([]sample, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

// nodes returns the node label of each sample of q.
func (p *prometheus) nodes(q string) (map[string]bool, error) {
	s, err := p.query(q)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, x := range s {
		out[x.Metric["node"]] = true
	}
	return out, nil
}

// firing returns the nodes alertname fires for (Prometheus' ALERTS series).
func (p *prometheus) firing(alertname string) (map[string]bool, error) {
	return p.nodes(fmt.Sprintf(`ALERTS{alertname=%q,alertstate="firing"}`, alertname))
}

func (e *env) kubectlStdin(stdin string, args ...string) (string, error) {
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Scenario (issue 16): a real Prometheus with the shipped scrape config and
// alerts. Every agent target is up with its node label; the ADD latency
// histogram has data for every worker; AuthBridgeNodeNotRedirectCapable
// fires for the worker made incapable and clears when it is capable again;
// AuthBridgePodsWithoutRules fires for pods that started while the plugin
// was not in the chain (the agent off the node, as after a reboot before the
// agent is ready) and clears when they are deleted. Timings go to
// figures.txt.
func TestMonitoringPrometheus(t *testing.T) {
	e := newEnv(t)
	p := startPrometheus(t, e)
	ctx := context.Background()

	eventually(t, 2*time.Minute, "every agent target up", func() error {
		up, err := p.nodes(`up{job="authbridge-node-metrics"} == 1`)
		if err != nil {
			return err
		}
		for _, n := range e.nodes() {
			if !up[n] {
				return fmt.Errorf("no up target with node=%s (have %v)", n, up)
			}
		}
		return nil
	})

	ns := e.namespace(t, "e2e-monitoring")
	for _, w := range e.workers {
		e.createPod(t, ns, e.appPod("add-"+w, "enforce-redirect", w, true))
	}
	for _, w := range e.workers {
		e.waitRunning(t, ns, "add-"+w)
	}
	eventually(t, time.Minute, "ADD latency histogram on every worker", func() error {
		have, err := p.nodes(`authbridge_cni_add_duration_seconds_count > 0`)
		if err != nil {
			return err
		}
		for _, w := range e.workers {
			if !have[w] {
				return fmt.Errorf("no ADD observations for %s (have %v)", w, have)
			}
		}
		return nil
	})

	t.Run("NotRedirectCapable", func(t *testing.T) {
		node := e.workers[1]
		start := time.Now()
		e.makeIncapable(t, node)
		eventually(t, 4*time.Minute, "AuthBridgeNodeNotRedirectCapable firing for "+node, func() error {
			f, err := p.firing("AuthBridgeNodeNotRedirectCapable")
			if err != nil {
				return err
			}
			if !f[node] || len(f) != 1 {
				return fmt.Errorf("firing for %v", f)
			}
			return nil
		})
		writeFigure("alert-not-redirect-capable-firing", time.Since(start).Round(time.Second).String()+" (for: "+e2eFor+")")
	})
	eventually(t, 3*time.Minute, "AuthBridgeNodeNotRedirectCapable cleared", func() error {
		f, err := p.firing("AuthBridgeNodeNotRedirectCapable")
		if err != nil || len(f) > 0 {
			return fmt.Errorf("still firing for %v (%v)", f, err)
		}
		return nil
	})

	t.Run("PodsWithoutRules", func(t *testing.T) {
		node := e.workers[0]
		// The main agent leaves the node (its affinity excludes the label)
		// and removes its entry on SIGTERM: a pod started now gets no rules.
		e.labelNode(t, node, forceFailLabel, "off")
		t.Cleanup(func() { e.labelNode(t, node, forceFailLabel, "") })
		eventually(t, 2*time.Minute, "agent gone from "+node, func() error {
			types, err := conflistPlugins(t, node)
			if err != nil || hasAuthbridgePlugin(types) {
				return fmt.Errorf("entry still in the conflist (%v)", err)
			}
			return nil
		})
		e.createPod(t, ns, e.appPod("norules", "enforce-redirect", node, true))
		e.waitRunning(t, ns, "norules")
		start := time.Now()
		e.labelNode(t, node, forceFailLabel, "")
		eventually(t, 5*time.Minute, "AuthBridgePodsWithoutRules firing for "+node, func() error {
			f, err := p.firing("AuthBridgePodsWithoutRules")
			if err != nil {
				return err
			}
			if !f[node] || len(f) != 1 {
				return fmt.Errorf("firing for %v", f)
			}
			return nil
		})
		writeFigure("alert-pods-without-rules-firing", time.Since(start).Round(time.Second).String()+" after the agent came back (grace 60s, for: "+e2eFor+")")
		if err := e.cs.CoreV1().Pods(ns).Delete(ctx, "norules", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		eventually(t, 3*time.Minute, "AuthBridgePodsWithoutRules cleared", func() error {
			f, err := p.firing("AuthBridgePodsWithoutRules")
			if err != nil || len(f) > 0 {
				return fmt.Errorf("still firing for %v (%v)", f, err)
			}
			return nil
		})
		writeFigure("alert-pods-without-rules-cleared", time.Since(start).Round(time.Second).String()+" after the pod was deleted")
	})
}
