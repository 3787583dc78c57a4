package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
)

func nodeLabels(t *testing.T, cs kubernetes.Interface, name string) (map[string]string, map[string]string) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels, n.Annotations
}

// Labels follow the probe: set, flipped to none/false, flipped to the next
// preferred backend, removed at shutdown; each change is a Node Event; the
// last-probe annotation carries the time and the results; the node state
// file carries the results and DNS settings read from the host files.
func TestCapabilityLabelsEventsAndStateFile(t *testing.T) {
	cs := admin(t)
	node := "node-labels"
	createNode(t, cs, node)
	// A label of someone else's must survive our patches.
	if _, err := cs.CoreV1().Nodes().Patch(context.Background(), node, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"team":"x"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubelet := dir + "/kubelet-config.yaml"
	os.WriteFile(kubelet, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- 10.96.0.10\n"), 0o644)
	resolv := dir + "/resolv.conf"
	os.WriteFile(resolv, []byte("search example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\n"), 0o644)

	cfg := testConfig(t)
	h := newAgent(t, cs, node, cfg, func(o *Options) {
		o.KubeletConfigPath, o.ResolvConfPath = kubelet, resolv
		o.UninstallCheck = func(context.Context) Verdict { return Verdict{Uninstall: true, Why: "test: real uninstall"} }
	})
	h.probe.set("nftables", "iptables-nft")
	h.start(t)
	h.waitReady(t)

	labels, ann := nodeLabels(t, cs, node)
	if labels[LabelEgressRedirect] != "nftables" || labels[LabelEgressRedirectCapable] != "true" || labels["team"] != "x" {
		t.Fatalf("labels after capable probe: %v", labels)
	}
	var lp lastProbe
	if err := json.Unmarshal([]byte(ann[AnnotationLastProbe]), &lp); err != nil {
		t.Fatalf("last-probe annotation %q: %v", ann[AnnotationLastProbe], err)
	}
	if lp.Best != "nftables" || len(lp.Results) != 3 || !lp.Results[0].Works || lp.Results[2].Works || time.Since(lp.Time) > time.Minute {
		t.Fatalf("last-probe annotation: %+v", lp)
	}
	st, err := nodestate.Read(h.a.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st.ClusterDNS, ",") != "10.96.0.10" || strings.Join(st.NodeResolvers, ",") != "192.0.2.53,2001:db8::53" {
		t.Fatalf("state DNS: clusterDNS %v nodeResolvers %v", st.ClusterDNS, st.NodeResolvers)
	}
	if w := st.Working(cfg.Backends); strings.Join(w, ",") != "nftables,iptables-nft" {
		t.Fatalf("state working backends: %v", w)
	}
	evs := eventsWithReason(events(t, cs, "default", "Node", node), ReasonCapabilityChanged)
	if len(evs) != 1 || evs[0].Type != corev1.EventTypeNormal || !strings.Contains(evs[0].Message, "to nftables") {
		t.Fatalf("node events after first probe: %s", describeEvents(evs))
	}
	s := h.scrape(t)
	if v, _ := s.Get("authbridge_probe_backend_works", map[string]string{"backend": "nftables"}); v != 1 {
		t.Errorf("probe_backend_works{nftables} = %v", v)
	}
	if v, _ := s.Get("authbridge_probe_backend_works", map[string]string{"backend": "iptables-legacy"}); v != 0 {
		t.Errorf("probe_backend_works{iptables-legacy} = %v", v)
	}
	if v := s["authbridge_agent_ready"]; v != 1 {
		t.Errorf("agent_ready = %v", v)
	}

	// Nothing works any more.
	h.probe.set()
	h.a.ProbeOnce(context.Background())
	waitFor(t, 10*time.Second, func() (bool, string) {
		l, _ := nodeLabels(t, cs, node)
		return l[LabelEgressRedirect] == "none" && l[LabelEgressRedirectCapable] == "false", "labels " + l[LabelEgressRedirect] + "/" + l[LabelEgressRedirectCapable]
	})
	waitFor(t, 10*time.Second, func() (bool, string) {
		evs := eventsWithReason(events(t, cs, "default", "Node", node), ReasonCapabilityChanged)
		for _, e := range evs {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "from nftables to none") && strings.Contains(e.Message, "probe connection not redirected") {
				return true, ""
			}
		}
		return false, describeEvents(evs)
	})
	if v := h.scrape(t)["authbridge_egress_redirect_capable"]; v != 0 {
		t.Errorf("egress_redirect_capable = %v after failing probe", v)
	}

	// Only the last preference works.
	h.probe.set("iptables-legacy")
	h.a.ProbeOnce(context.Background())
	waitFor(t, 10*time.Second, func() (bool, string) {
		l, _ := nodeLabels(t, cs, node)
		return l[LabelEgressRedirect] == "iptables-legacy" && l[LabelEgressRedirectCapable] == "true", "labels " + l[LabelEgressRedirect]
	})
	// Same result again: no new event.
	h.a.ProbeOnce(context.Background())
	time.Sleep(500 * time.Millisecond)
	if n := len(eventsWithReason(events(t, cs, "default", "Node", node), ReasonCapabilityChanged)); n != 3 {
		t.Fatalf("want 3 capability events (set, lost, regained), got %d", n)
	}

	// Shutdown on a real uninstall: labels it set are removed.
	if err := h.stop(t); err != nil {
		t.Fatalf("agent Run: %v", err)
	}
	labels, _ = nodeLabels(t, cs, node)
	if _, ok := labels[LabelEgressRedirect]; ok {
		t.Fatalf("egress-redirect label left after uninstall: %v", labels)
	}
	if _, ok := labels[LabelEgressRedirectCapable]; ok {
		t.Fatalf("capable label left after uninstall: %v", labels)
	}
	if labels["team"] != "x" {
		t.Fatalf("foreign label removed: %v", labels)
	}
}

// The probe runs periodically on ProbeInterval.
func TestPeriodicProbe(t *testing.T) {
	cs := admin(t)
	node := "node-periodic"
	createNode(t, cs, node)
	cfg := testConfig(t)
	cfg.ProbeInterval.Duration = 200 * time.Millisecond
	h := newAgent(t, cs, node, cfg, nil)
	h.start(t)
	h.waitReady(t)
	h.probe.set("iptables-nft")
	waitFor(t, 10*time.Second, func() (bool, string) {
		l, _ := nodeLabels(t, cs, node)
		return l[LabelEgressRedirect] == "iptables-nft", "label " + l[LabelEgressRedirect]
	})
}

// gatedInstaller is a test double for internal/install (tested against real conf
// dirs in that package and in TestRunWithPluginInstaller): it lets the test
// decide when "installed" happens.
type gatedInstaller struct {
	release     chan struct{}
	uninstalled chan struct{}
}

func (g *gatedInstaller) Run(ctx context.Context, installed func()) error {
	select {
	case <-g.release:
		installed()
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

func (g *gatedInstaller) Uninstall(context.Context) error { close(g.uninstalled); return nil }

// /readyz is 503 until installed, probed and the Node labelled; /healthz
// is 200 throughout.
func TestReadiness(t *testing.T) {
	cs := admin(t)
	node := "node-ready"
	createNode(t, cs, node)
	gi := &gatedInstaller{release: make(chan struct{}), uninstalled: make(chan struct{})}
	h := newAgent(t, cs, node, testConfig(t), func(o *Options) {
		o.Installer = gi
		o.UninstallCheck = func(context.Context) Verdict { return Verdict{Uninstall: true, Why: "test: real uninstall"} }
	})
	h.start(t)
	get := func(path string) (int, string) {
		resp, err := http.Get(h.url + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:n])
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		code, body := get("/readyz")
		return code == 503 && strings.Contains(body, "not installed"), body
	})
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	// Labels are not set before the plugin is installed.
	if l, _ := nodeLabels(t, cs, node); l[LabelEgressRedirect] != "" {
		t.Fatalf("labelled before install: %v", l)
	}
	close(gi.release)
	waitFor(t, 10*time.Second, func() (bool, string) {
		code, body := get("/readyz")
		return code == 200, body
	})
	h.stop(t)
	select {
	case <-gi.uninstalled:
	default:
		t.Fatal("Uninstall not called on shutdown")
	}
}

// An API server that is down: the agent keeps retrying with backoff, stays
// unready and counts the failures; the state file is written anyway.
func TestAPIServerDown(t *testing.T) {
	srv := apiserver.Shared(t)
	cfg := srv.AdminConfig()
	cfg.Host = "https://127.0.0.1:1" // nothing listens there
	cfg.Timeout = time.Second
	down, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newAgent(t, down, "node-down", testConfig(t), nil)
	h.start(t)
	waitFor(t, 15*time.Second, func() (bool, string) {
		s := h.scrape(t)
		return s["authbridge_node_update_errors_total"] >= 2, "node update errors so far"
	})
	if ok, why := h.a.Ready(); ok || !strings.Contains(why, "API server") {
		t.Fatalf("ready=%v (%s) with the API server down", ok, why)
	}
	if _, err := nodestate.Read(h.a.StatePath()); err != nil {
		t.Fatalf("state file not written while the API server is down: %v", err)
	}
	if !strings.Contains(h.logs.String(), "retrying") {
		t.Fatalf("no retry logged: %s", h.logs.String())
	}
}
