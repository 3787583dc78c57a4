package podinfo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
)

// One real kube-apiserver (+ etcd) for the package's tests, started by the
// first test that needs it (apiserver.Shared): the pure tests run without.
func TestMain(m *testing.M) {
	os.Exit(apiserver.RunTests(m))
}

func writeKubeconfig(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func admin(t *testing.T) kubernetes.Interface { return apiserver.Shared(t).AdminClient(t) }

func mustCreate(t *testing.T, cs kubernetes.Interface, ns string, objs ...any) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	// No controllers run, so the "default" ServiceAccount pods need is ours to make.
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create default service account in %s: %v", ns, err)
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			_, err = cs.CoreV1().Pods(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("create %T in %s: %v", o, ns, err)
		}
	}
}

func apiPod(name string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "example/app"},
			{Name: config.DefaultSidecarContainerName, Image: "example/proxy"},
		}},
	}
}

func runtimeConfig(doc string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.NamespaceConfigMap}, Data: map[string]string{config.NamespaceConfigMapKey: doc}}
}

func TestKubeSourceReadsPodAndNamespaceConfig(t *testing.T) {
	srv := apiserver.Shared(t)
	cs := admin(t)
	mustCreate(t, cs, "ns-good", apiPod("agent", map[string]string{config.AnnotationEgressEnforcement: "auto"}), runtimeConfig("egressEnforcement: none\n"))
	mustCreate(t, cs, "ns-plain", apiPod("agent", nil))
	src, err := NewKubeSource(writeKubeconfig(t, srv.AdminKubeconfig()), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod, err := src.GetPod(ctx, "ns-good", "agent")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Annotations[config.AnnotationEgressEnforcement] != "auto" || !IsAuthBridgePod(pod, []string{config.DefaultSidecarContainerName}) {
		t.Fatalf("pod read back wrong: %+v", pod.ObjectMeta)
	}
	nc, err := src.GetNamespaceConfig(ctx, "ns-good")
	if err != nil || nc.EgressEnforcement != config.ModeNone {
		t.Fatalf("namespace config = %+v, %v; want none", nc, err)
	}
	nc, err = src.GetNamespaceConfig(ctx, "ns-plain")
	if err != nil || nc.EgressEnforcement != "" {
		t.Fatalf("namespace without ConfigMap = %+v, %v; want zero", nc, err)
	}
	_, err = src.GetPod(ctx, "ns-plain", "missing")
	if err == nil || !strings.Contains(err.Error(), "pod ns-plain/missing not found") || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("missing pod error = %v", err)
	}
}

// TestKubeSourceRuntimeClassHandler reads a RuntimeClass's handler from the
// real API server; a missing RuntimeClass is an error naming it.
func TestKubeSourceRuntimeClassHandler(t *testing.T) {
	srv := apiserver.Shared(t)
	cs := admin(t)
	ctx := context.Background()
	if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src, err := NewKubeSource(writeKubeconfig(t, srv.AdminKubeconfig()), 0)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := src.GetRuntimeClassHandler(ctx, "gvisor"); err != nil || h != "runsc" {
		t.Fatalf("handler of RuntimeClass gvisor = %q, %v; want runsc", h, err)
	}
	if _, err := src.GetRuntimeClassHandler(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "RuntimeClass missing not found") {
		t.Fatalf("missing RuntimeClass: %v; want an error naming it", err)
	}
}

func TestKubeSourceRefusesBadNamespaceConfig(t *testing.T) {
	srv := apiserver.Shared(t)
	cs := admin(t)
	mustCreate(t, cs, "ns-badvalue", runtimeConfig("egressEnforcement: disabled\n"))
	mustCreate(t, cs, "ns-bool", runtimeConfig("egressEnforcement: off\n"))
	mustCreate(t, cs, "ns-badyaml", runtimeConfig("egressEnforcement: [\n"))
	src, err := NewKubeSource(writeKubeconfig(t, srv.AdminKubeconfig()), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.GetNamespaceConfig(context.Background(), "ns-badvalue")
	if err == nil || !strings.Contains(err.Error(), "namespace ns-badvalue ConfigMap authbridge-runtime-config key config.yaml field egressEnforcement") || !strings.Contains(err.Error(), `"disabled"`) {
		t.Fatalf("bad value error = %v", err)
	}
	_, err = src.GetNamespaceConfig(context.Background(), "ns-bool")
	if err == nil || !strings.Contains(err.Error(), "quote the value") {
		t.Fatalf("YAML boolean error = %v", err)
	}
	_, err = src.GetNamespaceConfig(context.Background(), "ns-badyaml")
	if err == nil || !strings.Contains(err.Error(), "not valid YAML") || !strings.Contains(err.Error(), "ns-badyaml") {
		t.Fatalf("bad YAML error = %v", err)
	}
}

func TestKubeSourceForbidden(t *testing.T) {
	srv := apiserver.Shared(t)
	tok, err := srv.ServiceAccountToken(context.Background(), "ns-rbac", "nobody", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewKubeSource(writeKubeconfig(t, srv.Kubeconfig(tok)), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.GetPod(context.Background(), "ns-rbac", "agent")
	if err == nil || !strings.Contains(err.Error(), "refused to let the plugin read pod ns-rbac/agent") || !strings.Contains(err.Error(), "RBAC") {
		t.Fatalf("forbidden error = %v", err)
	}
}

func TestKubeSourceUnreachable(t *testing.T) {
	srv := apiserver.Shared(t)
	// A loopback port nobody listens on: the API server is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	kc := strings.Replace(string(srv.AdminKubeconfig()), srv.URL, "https://"+addr, 1)
	src, err := NewKubeSource(writeKubeconfig(t, []byte(kc)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.GetPod(context.Background(), "team", "agent")
	want := "cannot reach the Kubernetes API server at https://" + addr + " to read pod team/agent"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the pod is not started because its enforcement mode is unknown") {
		t.Fatalf("unreachable error = %v, want %q", err, want)
	}

	// A server that accepts and never answers: the timeout bounds the wait.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	kc = strings.Replace(string(srv.AdminKubeconfig()), srv.URL, "https://"+hang.Addr().String(), 1)
	src, err = NewKubeSource(writeKubeconfig(t, []byte(kc)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = src.GetNamespaceConfig(context.Background(), "team")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server") {
		t.Fatalf("hanging server error = %v", err)
	}
	// Generous bound: the 1 s timeout must end the call, not a TCP default.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("hanging server took %s", d)
	}
}

func TestNewKubeSourceErrors(t *testing.T) {
	if _, err := NewKubeSource("", 0); err == nil || !strings.Contains(err.Error(), "field kubeconfig") {
		t.Fatalf("empty path: %v", err)
	}
	if _, err := NewKubeSource("/nonexistent/kubeconfig", 0); err == nil || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Fatalf("missing file: %v", err)
	}
}
