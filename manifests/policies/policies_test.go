// Package policies_test runs the admission policy of this directory against
// a real kube-apiserver (internal/testing/apiserver, v1.34: ValidatingAdmissionPolicy
// is GA and its admission plugin is on by default).
package policies_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
)

var srv *apiserver.Server

// TestMain starts one API server for the package with the admission plugin
// named explicitly (it is on by default since 1.30; naming it makes a
// harness change that drops it fail here) and privileged containers
// allowed, as on a real cluster, so the policy (not the apiserver's
// --allow-privileged=false default) is what refuses them.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	s, err := apiserver.New(ctx, apiserver.Options{ExtraArgs: []string{
		"--enable-admission-plugins=ValidatingAdmissionPolicy",
		"--allow-privileged=true",
	}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver harness:", err)
		return 1
	}
	defer s.Stop()
	srv = s
	return m.Run()
}

func int64p(v int64) *int64 { return &v }
func boolp(v bool) *bool    { return &v }

// nonRoot is the securityContext of a well-behaved app container.
func nonRoot() *corev1.SecurityContext {
	return &corev1.SecurityContext{RunAsUser: int64p(1000), RunAsNonRoot: boolp(true), AllowPrivilegeEscalation: boolp(false)}
}

// abPod is an AuthBridge pod: app (as given) plus the proxy as UID 1337,
// the shape of the e2e stand-in pods (test/e2e appPod).
func abPod(name string, app *corev1.SecurityContext) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "example.com/app:1", SecurityContext: app},
			{Name: "authbridge-proxy", Image: "example.com/proxy:1", SecurityContext: &corev1.SecurityContext{RunAsUser: int64p(1337), RunAsNonRoot: boolp(true), AllowPrivilegeEscalation: boolp(false)}},
		}},
	}
}

func loadPolicy(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	var p admissionregistrationv1.ValidatingAdmissionPolicy
	var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for file, into := range map[string]any{"policy.yaml": &p, "binding.yaml": &b} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(raw, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create binding: %v", err)
	}
	// No controller-manager runs here, so the policy's status (type check)
	// is never written: a broken expression shows instead as refusals of
	// the admitted shapes below (failurePolicy: Fail).
}

// waitEnforced creates a pod the policy refuses until it is refused (the
// apiserver picks policies up asynchronously).
func waitEnforced(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	p := abPod("probe-hostnetwork", nonRoot())
	p.Spec.HostNetwork = true
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "spec.hostNetwork") {
			return
		}
		if err == nil {
			_ = cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: int64p(0)})
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy not enforced after 30s (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPolicy(t *testing.T) {
	cs := srv.AdminClient(t)
	ctx := context.Background()
	ns := "policy-test"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	loadPolicy(t, cs)
	waitEnforced(t, cs, ns)

	type mut func(*corev1.Pod)
	app := func(f func(*corev1.SecurityContext)) mut {
		return func(p *corev1.Pod) { f(p.Spec.Containers[0].SecurityContext) }
	}
	withCaps := func(add ...corev1.Capability) mut {
		return app(func(sc *corev1.SecurityContext) { sc.Capabilities = &corev1.Capabilities{Add: add} })
	}
	always := corev1.ContainerRestartPolicyAlways
	refused := []struct {
		name  string
		mut   mut
		field string
	}{
		{"app-runs-as-proxy-uid", app(func(sc *corev1.SecurityContext) { sc.RunAsUser = int64p(1337) }), "spec.containers[app].securityContext.runAsUser"},
		{"pod-level-proxy-uid", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: int64p(1337)}
			p.Spec.Containers[0].SecurityContext.RunAsUser = nil
		}, "spec.containers[app].securityContext.runAsUser (or spec.securityContext.runAsUser)"},
		{"init-runs-as-proxy-uid", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x", SecurityContext: &corev1.SecurityContext{RunAsUser: int64p(1337), AllowPrivilegeEscalation: boolp(false)}}}
		}, "spec.initContainers[init].securityContext.runAsUser"},
		{"add-net-raw", withCaps("NET_RAW"), "spec.containers[app].securityContext.capabilities.add"},
		{"add-cap-net-raw-lower", withCaps("cap_net_raw"), "spec.containers[app].securityContext.capabilities.add"},
		{"add-net-admin", withCaps("NET_ADMIN"), "spec.containers[app].securityContext.capabilities.add"},
		{"add-sys-admin", withCaps("SYS_ADMIN"), "spec.containers[app].securityContext.capabilities.add"},
		{"add-all", withCaps("ALL"), "spec.containers[app].securityContext.capabilities.add"},
		{"privileged", app(func(sc *corev1.SecurityContext) { sc.Privileged = boolp(true); sc.AllowPrivilegeEscalation = nil }), "spec.containers[app].securityContext.privileged"},
		{"root-without-drop", app(func(sc *corev1.SecurityContext) { *sc = corev1.SecurityContext{} }), "spec.containers[app].securityContext: a container that may run as root"},
		{"root-uid-0-no-escalation", app(func(sc *corev1.SecurityContext) { sc.RunAsUser = int64p(0); sc.RunAsNonRoot = nil }), "spec.containers[app].securityContext: a container that may run as root"},
		{"non-root-may-escalate", app(func(sc *corev1.SecurityContext) { sc.AllowPrivilegeEscalation = nil }), "spec.containers[app].securityContext: a container that may run as root or gain privileges"},
		{"host-network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "spec.hostNetwork"},
		{"native-sidecar-pod-root-init", func(p *corev1.Pod) {
			proxy := p.Spec.Containers[1]
			proxy.RestartPolicy = &always
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = []corev1.Container{proxy, {Name: "setup", Image: "x"}}
		}, "spec.initContainers[setup].securityContext: a container that may run as root"},
	}
	for _, c := range refused {
		t.Run("refused/"+c.name, func(t *testing.T) {
			p := abPod(c.name, nonRoot())
			c.mut(p)
			_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err == nil {
				t.Fatalf("admitted; want refused naming %q", c.field)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "authbridge-pod-egress-guard") {
				t.Errorf("error %q does not name %q (and the policy)", err, c.field)
			}
		})
	}

	admitted := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"standin-shape", abPod("standin-shape", nonRoot())},
		{"root-dropping-all", abPod("root-dropping-all", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}})},
		{"pod-level-non-root", func() *corev1.Pod {
			p := abPod("pod-level-non-root", &corev1.SecurityContext{AllowPrivilegeEscalation: boolp(false)})
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: boolp(true)}
			return p
		}()},
		// Not an AuthBridge pod: the policy does not apply.
		{"plain-root-net-raw", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-root-net-raw"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "x", SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}}},
		}}}},
	}
	for _, d := range exampleDeployments(t) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "example-" + d.Name}, Spec: d.Spec.Template.Spec}
		admitted = append(admitted, struct {
			name string
			pod  *corev1.Pod
		}{"manifests/examples " + d.Name, p})
	}
	for _, c := range admitted {
		t.Run("admitted/"+c.name, func(t *testing.T) {
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, c.pod, metav1.CreateOptions{}); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}

	// Ephemeral containers (kubectl debug) go through the
	// pods/ephemeralcontainers subresource: checked there too.
	t.Run("ephemeral", func(t *testing.T) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "standin-shape", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			sc    *corev1.SecurityContext
			field string
		}{
			{&corev1.SecurityContext{RunAsUser: int64p(1337), AllowPrivilegeEscalation: boolp(false)}, "spec.ephemeralContainers[debug].securityContext.runAsUser"},
			{nil, "spec.ephemeralContainers[debug].securityContext: a container that may run as root"},
			{&corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}}}, "spec.ephemeralContainers[debug].securityContext.capabilities.add"},
		} {
			q := p.DeepCopy()
			q.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "x", SecurityContext: c.sc}}}
			_, err := cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, p.Name, q, metav1.UpdateOptions{})
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("ephemeral container: %v; want refused naming %q", err, c.field)
			}
		}
		q := p.DeepCopy()
		q.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "x", SecurityContext: nonRoot()}}}
		if _, err := cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, p.Name, q, metav1.UpdateOptions{}); err != nil {
			t.Errorf("non-root debug container refused: %v", err)
		}
	})
}

// exampleDeployments renders manifests/examples (which include this
// component) and returns its Deployments; the rendering must also carry
// the policy and its binding.
func exampleDeployments(t *testing.T) []*appsv1.Deployment {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.Deployment
	kinds := map[string]bool{}
	for _, r := range rm.Resources() {
		kinds[r.GetKind()] = true
		if r.GetKind() != "Deployment" {
			continue
		}
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, &d)
	}
	for _, k := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if !kinds[k] {
			t.Errorf("manifests/examples renders no %s: the examples must include the policies component", k)
		}
	}
	if len(out) == 0 {
		t.Fatal("no Deployments in manifests/examples")
	}
	return out
}
