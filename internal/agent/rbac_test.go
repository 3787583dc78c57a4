package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// applyRBAC creates the ServiceAccounts and RBAC of a kustomize dir from
// manifests/ in the API server; the admission policies are left out (the
// tests' tokens are not bound to an agent pod on a node).
func applyRBAC(t *testing.T, cs kubernetes.Interface, dir string) {
	t.Helper()
	apiserver.ApplyManifests(t, cs, dir, func(kind, _ string) bool {
		return !strings.HasPrefix(kind, "ValidatingAdmissionPolicy")
	})
}

func mustDecode(t *testing.T, b []byte, o any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(b, o); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// The ClusterRole from manifests/base is enough for everything the agent
// and plugin do (proved by running the agent with a TokenRequest token of
// the ServiceAccount), and no more.
//
// RBAC cannot limit "patch nodes" to the agent's own Node (NodeRestriction
// only applies to kubelet credentials), so patching another Node is
// allowed by the role; that is documented in manifests/README.md rather
// than asserted away here.
func TestRBACFromManifests(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	ctx := context.Background()
	applyRBAC(t, adm, "base")
	token, err := srv.ServiceAccountToken(ctx, "authbridge-system", "authbridge-node", 0)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(srv.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	node, ns := "node-rbac", "rbac-ns"
	createNode(t, adm, node)
	createNamespace(t, adm, ns)
	pod := createPod(t, adm, ns, "coop", node, true, nil)
	if _, err := adm.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "authbridge-runtime-config"}, Data: map[string]string{"config.yaml": "mode: enforce-redirect\n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The agent, with only the ServiceAccount's token: labels its Node,
	// lists pods on it, creates Node and Pod events.
	cfg := testConfig(t)
	h := newAgent(t, sa, node, cfg, nil)
	h.start(t)
	h.waitReady(t)
	if l, _ := nodeLabels(t, adm, node); l[LabelEgressRedirect] != "nftables" {
		t.Fatalf("restricted agent did not label the node: %v", l)
	}
	// The plugin's record of the ADD, so the agent's verify pass (kicked by
	// the event) writes the pod's condition through pods/status.
	if err := containerstate.Write(cfg.StateDir, containerstate.Record{ContainerID: "rbac-coop", Namespace: ns, Pod: pod.Name,
		PodUID: string(pod.UID), Mode: podmode.Cooperative, Reason: podmode.ReasonAnnotation}); err != nil {
		t.Fatal(err)
	}
	if err := pluginevents.Send(h.a.SocketPath(), pluginevents.Event{Op: "ADD", Result: "success", Mode: "cooperative", Reason: "annotation", Namespace: ns, Pod: pod.Name}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		evs := eventsWithReason(events(t, adm, ns, "Pod", pod.Name), ReasonCooperativeEgress)
		return len(evs) == 1 && evs[0].InvolvedObject.UID == pod.UID, "cooperative event by restricted agent"
	})
	waitFor(t, 10*time.Second, func() (bool, string) {
		c := condition(t, adm, pod)
		return c != nil && c.Reason == podcondition.ReasonCooperative, fmt.Sprintf("condition written by the restricted agent: %+v", c)
	})
	if n := len(eventsWithReason(events(t, adm, "default", "Node", node), ReasonCapabilityChanged)); n != 1 {
		t.Fatalf("node event by restricted agent: %d", n)
	}
	if _, err := h.a.PodsWithoutRules(ctx, time.Now()); err != nil {
		t.Fatalf("restricted agent cannot list pods on its node: %v", err)
	}
	// The agent's decision cache: watch pods on its node, watch the
	// runtime ConfigMaps by name; its shutdown check and the plugin's
	// token.
	if _, err := sa.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node}); err != nil {
		t.Errorf("watch pods on its node: %v", err)
	}
	if _, err := sa.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=authbridge-runtime-config"}); err != nil {
		t.Errorf("watch runtime ConfigMaps: %v", err)
	}
	// ...and watch RuntimeClasses (the handler of a VM-sandbox pod is
	// answered from the cache too; creating one stays forbidden below).
	if _, err := sa.NodeV1().RuntimeClasses().Watch(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("watch runtimeclasses: %v", err)
	}
	if _, err := sa.AppsV1().DaemonSets("authbridge-system").Get(ctx, "authbridge-node", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get its DaemonSet: want NotFound (allowed, none here), got %v", err)
	}
	nodeObj, err := adm.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cred := &PluginCredential{Client: sa, Namespace: "authbridge-system", NodeName: node, Server: srv.URL,
		CAFile: writeTemp(t, srv.CA), Path: filepath.Join(t.TempDir(), "cred", PluginKubeconfigName)}
	if _, err := cred.Refresh(ctx); err != nil {
		t.Fatalf("the agent cannot request the plugin's Node-bound token: %v", err)
	}
	if cred.UnboundFallback {
		t.Fatal("v1.34 API server refused the Node binding")
	}
	plugin := clientFromKubeconfig(t, cred.Path)
	// What the plugin does with its own token: get the pod, get the
	// namespace's ConfigMap; nothing else.
	if _, err := plugin.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("plugin: get pod: %v", err)
	}
	if _, err := plugin.CoreV1().ConfigMaps(ns).Get(ctx, "authbridge-runtime-config", metav1.GetOptions{}); err != nil {
		t.Errorf("plugin: get configmap: %v", err)
	}
	if _, err := plugin.NodeV1().RuntimeClasses().Get(ctx, "none-here", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("plugin: get runtimeclass: want NotFound (allowed, none here), got %v", err)
	}
	pluginForbidden := map[string]error{}
	_, pluginForbidden["list pods"] = plugin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	_, pluginForbidden["list runtimeclasses"] = plugin.NodeV1().RuntimeClasses().List(ctx, metav1.ListOptions{})
	_, pluginForbidden["watch pods"] = plugin.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	_, pluginForbidden["get another configmap"] = plugin.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{})
	_, pluginForbidden["get secrets"] = plugin.CoreV1().Secrets(ns).Get(ctx, "x", metav1.GetOptions{})
	_, pluginForbidden["get nodes"] = plugin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	_, pluginForbidden["patch nodes"] = plugin.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, pluginForbidden["create events"] = plugin.CoreV1().Events(ns).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, pluginForbidden["create tokens"] = plugin.CoreV1().ServiceAccounts("authbridge-system").CreateToken(ctx, PluginServiceAccount, &authv1.TokenRequest{}, metav1.CreateOptions{})
	for what, err := range pluginForbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("plugin: %s: want Forbidden, got %v", what, err)
		}
	}
	if _, err := adm.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "rbac-gvisor"}, Handler: "runsc"}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rc, err := sa.NodeV1().RuntimeClasses().Get(ctx, "rbac-gvisor", metav1.GetOptions{}); err != nil || rc.Handler != "runsc" {
		t.Errorf("get runtimeclass: %v", err)
	}

	// And no more.
	forbidden := map[string]error{}
	_, forbidden["get secrets"] = sa.CoreV1().Secrets(ns).Get(ctx, "x", metav1.GetOptions{})
	_, forbidden["create runtimeclasses"] = sa.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Handler: "runc"}, metav1.CreateOptions{})
	_, forbidden["list secrets cluster-wide"] = sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden["delete nodes"] = sa.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	_, forbidden["create nodes"] = sa.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
	_, forbidden["update nodes"] = sa.CoreV1().Nodes().Update(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.UpdateOptions{})
	_, forbidden["list nodes"] = sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	_, forbidden["patch pods"] = sa.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	forbidden["delete pods (without the repair component)"] = sa.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	_, forbidden["create pods"] = sa.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}, metav1.CreateOptions{})
	_, forbidden["create configmaps"] = sa.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "evil"}}, metav1.CreateOptions{})
	_, forbidden["update configmaps"] = sa.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "authbridge-runtime-config"}}, metav1.UpdateOptions{})
	forbidden["delete events"] = sa.CoreV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, forbidden["get serviceaccounts"] = sa.CoreV1().ServiceAccounts("authbridge-system").Get(ctx, "authbridge-node", metav1.GetOptions{})
	_, forbidden["list configmaps cluster-wide"] = sa.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	_, forbidden["list configmaps in a namespace"] = sa.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	_, forbidden["get another configmap"] = sa.CoreV1().ConfigMaps(ns).Get(ctx, "other", metav1.GetOptions{})
	_, forbidden["watch all configmaps"] = sa.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	_, forbidden["token of another ServiceAccount"] = sa.CoreV1().ServiceAccounts("authbridge-system").CreateToken(ctx, "authbridge-node", &authv1.TokenRequest{}, metav1.CreateOptions{})
	_, forbidden["get daemonsets elsewhere"] = sa.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	_, forbidden["update nodes (taints go by patch)"] = sa.CoreV1().Nodes().Update(ctx, nodeObj, metav1.UpdateOptions{})
	_, forbidden["patch events"] = sa.CoreV1().Events(ns).Patch(ctx, "x", types.MergePatchType, []byte(`{"message":"x"}`), metav1.PatchOptions{})
	_, forbidden["create events.k8s.io events"] = sa.EventsV1().Events(ns).Create(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, forbidden["create clusterrolebindings"] = sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"}}, metav1.CreateOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: want Forbidden, got %v", what, err)
		}
	}

	// The optional repair component adds pods delete, and only that.
	applyRBAC(t, adm, "overlays/with-repair")
	// (the authorizer sees new bindings through an informer: poll)
	waitFor(t, 10*time.Second, func() (bool, string) {
		err := sa.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{})
		return err == nil, fmt.Sprint("with repair component: delete pod: ", err)
	})
	if _, err := sa.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("with repair component: patch pod: want Forbidden, got %v", err)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func clientFromKubeconfig(t *testing.T, path string) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
