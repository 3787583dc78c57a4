//go:build e2e

// Package e2e runs the scenarios of issue 5 against the live kind cluster
// that test/e2e/run.sh builds offline (`make e2e`). It needs KUBECONFIG and
// the E2E_* variables run.sh exports; it is not part of `go test ./...`.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	annotationMode     = "kagenti.io/egress-enforcement"
	labelRedirect      = "authbridge.kagenti.io/egress-redirect"
	labelCapable       = "authbridge.kagenti.io/egress-redirect-capable"
	sidecarName        = "authbridge-proxy"
	proxyUID           = 1337
	primaryConflist    = "/etc/cni/net.d/10-kindnet.conflist"
	agentNameFragment  = "authbridge"
	defaultWaitTimeout = 3 * time.Minute
	// The Multus attachment AuthBridge pods request (multus variant).
	attachmentAnnotation = "k8s.v1.cni.cncf.io/networks"
	attachmentNAD        = "default/authbridge-cni"
)

type env struct {
	cs          *kubernetes.Clientset
	cluster     string
	testImage   string
	toolsImage  string
	kubeconfig  string
	controlNode string
	workers     []string
}

func mustEnv(t *testing.T, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s is not set: run the e2e through test/e2e/run.sh (make e2e)", k)
	}
	return v
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		kubeconfig: mustEnv(t, "KUBECONFIG"),
		cluster:    mustEnv(t, "E2E_CLUSTER"),
		testImage:  mustEnv(t, "E2E_TESTBIN_IMAGE"),
		toolsImage: mustEnv(t, "E2E_TOOLS_IMAGE"),
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", e.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	e.cs, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	nodes, err := e.cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	for _, n := range nodes.Items {
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
			e.controlNode = n.Name
		} else {
			e.workers = append(e.workers, n.Name)
		}
	}
	if e.controlNode == "" || len(e.workers) != 2 {
		t.Fatalf("want 1 control-plane + 2 workers, got control-plane %q workers %v", e.controlNode, e.workers)
	}
	return e
}

func (e *env) nodes() []string { return append([]string{e.controlNode}, e.workers...) }

// nodeExec runs a command inside a kind node container (the node's host side).
func nodeExec(t *testing.T, node string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"exec", node}, args...)...).CombinedOutput()
	return string(out), err
}

// kubectl runs kubectl against the e2e cluster.
func (e *env) kubectl(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// podExec runs a command in a pod's container (the images have no shell).
func (e *env) podExec(ns, pod, container string, args ...string) (string, error) {
	return e.kubectl(append([]string{"exec", "-n", ns, pod, "-c", container, "--"}, args...)...)
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

func (e *env) namespace(t *testing.T, prefix string) string {
	t.Helper()
	name := prefix + "-" + rand.String(5)
	_, err := e.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_KEEP") == "1" {
			return
		}
		_ = e.cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// namespaceMode sets the namespace's egressEnforcement in its
// authbridge-runtime-config ConfigMap.
func (e *env) namespaceMode(t *testing.T, ns, mode string) {
	t.Helper()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "authbridge-runtime-config", Namespace: ns},
		Data:       map[string]string{"config.yaml": "egressEnforcement: " + mode + "\n"},
	}
	if _, err := e.cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ConfigMap %s/authbridge-runtime-config: %v", ns, err)
	}
}

// agentDaemonSet finds the node agent's DaemonSet, whatever namespace the
// manifests put it in.
func (e *env) agentDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	list, err := e.cs.AppsV1().DaemonSets("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list daemonsets: %v", err)
	}
	for i := range list.Items {
		if strings.Contains(list.Items[i].Name, agentNameFragment) {
			return &list.Items[i]
		}
	}
	t.Fatalf("no DaemonSet named *%s* in the cluster: is the agent installed (test/e2e/install-agent.sh)?", agentNameFragment)
	return nil
}

func int64p(v int64) *int64 { return &v }

// appPod is a pod with an app container (UID 1000) and, when sidecar is
// true, the stand-in AuthBridge sidecar (UID 1337). No init container, no
// capabilities.
func (e *env) appPod(name, mode, node string, sidecar bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: int64p(1),
			Containers: []corev1.Container{{
				Name: "app", Image: e.testImage, ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/netcheck", "sleep"},
				SecurityContext: &corev1.SecurityContext{RunAsUser: int64p(1000), RunAsNonRoot: boolp(true), AllowPrivilegeEscalation: boolp(false)},
			}},
		},
	}
	if mode != "" {
		p.Annotations = map[string]string{annotationMode: mode}
	}
	if node != "" {
		p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	if sidecar && multusVariant() {
		// What the injector adds on a multus-attachment cluster (and the
		// authbridge-pod-attachment admission policy requires).
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[attachmentAnnotation] = attachmentNAD
	}
	if sidecar {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: sidecarName, Image: e.testImage, ImagePullPolicy: corev1.PullNever,
			Command:         []string{"/standin-sidecar"},
			SecurityContext: &corev1.SecurityContext{RunAsUser: int64p(proxyUID), RunAsNonRoot: boolp(true), AllowPrivilegeEscalation: boolp(false)},
		})
	}
	return p
}

func boolp(v bool) *bool { return &v }

func (e *env) createPod(t *testing.T, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := e.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, p.Name, err)
	}
	return got
}

func (e *env) waitRunning(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, defaultWaitTimeout, "pod "+ns+"/"+name+" ready", func() error {
		p, err := e.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("phase %s, events: %s", p.Status.Phase, e.podEvents(ns, name))
	})
	return pod
}

// podEvents summarises a pod's Events (reason: message), newest last.
func (e *env) podEvents(ns, name string) string {
	ev, err := e.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, x := range ev.Items {
		fmt.Fprintf(&b, "[%s %s: %s] ", x.Type, x.Reason, x.Message)
	}
	return b.String()
}

// conflistPlugins returns the plugin types of a node's primary conflist.
func conflistPlugins(t *testing.T, node string) ([]string, error) {
	t.Helper()
	out, err := nodeExec(t, node, "cat", primaryConflist)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %v: %s", primaryConflist, node, err, out)
	}
	var cl struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(out), &cl); err != nil {
		return nil, fmt.Errorf("parse %s on %s: %v", primaryConflist, node, err)
	}
	var types []string
	for _, p := range cl.Plugins {
		types = append(types, p.Type)
	}
	return types, nil
}

func hasAuthbridgePlugin(types []string) bool {
	return len(types) > 0 && strings.Contains(types[len(types)-1], agentNameFragment)
}

// variant is E2E_VARIANT ("" for the default cluster): test/e2e/variant-<name>.sh.
func variant() string { return os.Getenv("E2E_VARIANT") }

// multusVariant: the cluster's CNI is Multus delegating to the ptp network,
// the agent installed through the OpenShift overlay in multus-attachment
// mode (test/e2e/variant-multus.sh).
func multusVariant() bool { return variant() == "multus" }

// renderedInstall is the agent install install-agent.sh applied.
func renderedInstall() string {
	d := "agent-install"
	if v := variant(); v != "" {
		d += "-" + v
	}
	return filepath.Join(os.Getenv("AUTHBRIDGE_CACHE_E2E"), d, "rendered.yaml")
}
