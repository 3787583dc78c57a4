package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// One real kube-apiserver (+ etcd) for the package, started by the first
// test that needs it (apiserver.Shared); each test uses its own Node and
// namespace names.
func TestMain(m *testing.M) {
	// The drift and repair tests send real traffic through a re-executed
	// copy of this binary (redirecttest's client helper).
	redirecttest.HelperMain()
	os.Exit(apiserver.RunTests(m))
}

// admin is a system:masters client of the package's API server; it skips
// the test under -short (no kube-apiserver there).
func admin(t *testing.T) kubernetes.Interface {
	t.Helper()
	return apiserver.Shared(t).AdminClient(t)
}

// fakeProbe stands in for capability.Probe (tested with real kernels in
// pkg/capability): these tests are about what the agent does with results.
type fakeProbe struct {
	mu       sync.Mutex
	works    map[string]bool
	calls    int
	families []redirect.Family // of the last call
}

func (f *fakeProbe) set(works ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.works = map[string]bool{}
	for _, w := range works {
		f.works[w] = true
	}
}

func (f *fakeProbe) probe(_ context.Context, backends []string, families []redirect.Family) []nodestate.BackendResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.families = families
	var out []nodestate.BackendResult
	for _, b := range backends {
		r := nodestate.BackendResult{Backend: b, Works: f.works[b], Duration: 3 * time.Millisecond}
		if !r.Works {
			r.Error = "probe connection not redirected (test)"
		}
		out = append(out, r)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	a       *Agent
	url     string // http://127.0.0.1:port
	cancel  context.CancelFunc
	done    chan error
	logs    *syncBuffer
	probe   *fakeProbe
	cfg     config.Agent
	stopped bool
}

func testConfig(t *testing.T) config.Agent {
	cfg, err := config.ParseAgent(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	cfg.ProbeInterval.Duration = time.Hour
	return cfg
}

// newAgent builds an agent on a real listener; mutate(o) adjusts options.
func newAgent(t *testing.T, cs kubernetes.Interface, node string, cfg config.Agent, mutate func(*Options)) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{logs: &syncBuffer{}, probe: &fakeProbe{}, cfg: cfg}
	h.probe.set("nftables", "iptables-nft", "iptables-legacy")
	o := Options{
		Config:      cfg,
		NodeName:    node,
		Client:      cs,
		Probe:       h.probe.probe,
		Logger:      slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Listener:    ln,
		APIRetryMax: 500 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&o)
	}
	h.a, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	return h
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.a.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
}

func (h *harness) stop(t *testing.T) error {
	t.Helper()
	if h.stopped {
		return nil
	}
	h.stopped = true
	h.cancel()
	select {
	case err := <-h.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("agent did not stop within 60s")
		return nil
	}
}

func (h *harness) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, func() (bool, string) { return h.a.Ready() })
}

func (h *harness) scrape(t *testing.T) metrics.Samples {
	t.Helper()
	s, err := metrics.Scrape(context.Background(), h.url+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %s", timeout, last)
}

func createNode(t *testing.T, cs kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// No controller-manager runs: create the default ServiceAccount the
	// ServiceAccount admission plugin wants for pods.
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// createPod creates a pod bound to node and marks it Running with an IP
// (no kubelet runs here: the status is what a kubelet would write).
func createPod(t *testing.T, cs kubernetes.Interface, ns, name, node string, sidecar bool, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
	}
	if sidecar {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: config.DefaultSidecarContainerName, Image: "example.com/authbridge-proxy:1"})
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "10.244.0.10"
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.0.10"}}
	p, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// createHostNetworkPod creates a running AuthBridge pod with hostNetwork:
// true bound to node (its IP is the node's, as the kubelet reports it).
func createHostNetworkPod(t *testing.T, cs kubernetes.Interface, ns, name, node string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:    node,
			HostNetwork: true,
			Containers: []corev1.Container{
				{Name: "app", Image: "example.com/app:1"},
				{Name: config.DefaultSidecarContainerName, Image: "example.com/authbridge-proxy:1"},
			},
		},
	}
	p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "192.168.0.10"
	p.Status.PodIPs = []corev1.PodIP{{IP: "192.168.0.10"}}
	if p, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// events lists Events in ns about the object with the given name.
func events(t *testing.T, cs kubernetes.Interface, ns, kind, name string) []corev1.Event {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	l, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func eventsWithReason(evs []corev1.Event, reason string) []corev1.Event {
	var out []corev1.Event
	for _, e := range evs {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func describeEvents(evs []corev1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "[%s %s %s] ", e.Type, e.Reason, e.Message)
	}
	return b.String()
}
