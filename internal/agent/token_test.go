package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
)

// Why the plugin no longer uses the agent pod's (projected) token: the API
// server rejects a pod-bound token as soon as the pod is gone, so every
// ADD between an old agent pod's deletion and its successor's first write
// failed with 401. TestNodeBoundTokenOutlivesAgentPod shows what replaced it.
func TestBoundTokenDiesWithAgentPod(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	ctx := context.Background()
	ns, node := "token-ns", "node-token"
	createNamespace(t, adm, ns)
	if _, err := adm.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	agentPod, err := adm.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "old-agent"},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: "agent", Containers: []corev1.Container{{Name: "node-agent", Image: "example.com/agent:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := createPod(t, adm, ns, "workload", node, true, nil)
	exp := int64(3600)
	tr, err := adm.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "agent", &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(srv.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	// While the agent pod exists the token authenticates (Forbidden, not
	// Unauthorized: this ServiceAccount has no RBAC here).
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, other.Name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("token of a live pod: want Forbidden (authenticated), got %v", err)
	}
	zero := int64(0)
	if err := adm.CoreV1().Pods(ns).Delete(ctx, agentPod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, other.Name, metav1.GetOptions{})
		return apierrors.IsUnauthorized(err), fmt.Sprint("token after its pod was deleted: ", err)
	})
}

// The plugin's credential (PluginCredential): a token of its own
// ServiceAccount bound to the Node, with no pod claim, so it keeps working
// when agent pods come and go, and is rejected once the Node is deleted.
func TestNodeBoundTokenOutlivesAgentPod(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	ctx := context.Background()
	applyRBAC(t, adm, "base")
	node, ns := "node-bound", "bound-ns"
	createNode(t, adm, node)
	createNamespace(t, adm, ns)
	agentPod := createPod(t, adm, ns, "old-agent", node, false, nil)
	workload := createPod(t, adm, ns, "workload", node, true, nil)
	cred := &PluginCredential{Client: agentClient(t), Namespace: "authbridge-system", NodeName: node, Server: srv.URL,
		CAFile: writeTemp(t, srv.CA), Path: filepath.Join(t.TempDir(), "cred", PluginKubeconfigName)}
	if _, err := cred.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The token's claims: bound to the Node, no pod.
	rc, err := clientcmd.BuildConfigFromFlags("", cred.Path)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rc.BearerToken, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", rc.BearerToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub string                     `json:"sub"`
		K8s map[string]json.RawMessage `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "system:serviceaccount:authbridge-system:"+PluginServiceAccount || claims.K8s["node"] == nil || claims.K8s["pod"] != nil {
		t.Fatalf("token claims %s; want the plugin's ServiceAccount, a node claim and no pod claim", payload)
	}
	plugin := clientFromKubeconfig(t, cred.Path)
	get := func() error {
		_, err := plugin.CoreV1().Pods(ns).Get(ctx, workload.Name, metav1.GetOptions{})
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("plugin token: %v", err)
	}
	zero := int64(0)
	if err := adm.CoreV1().Pods(ns).Delete(ctx, agentPod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := get(); err != nil {
		t.Fatalf("plugin token after the agent pod is gone: %v", err)
	}
	if err := adm.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		err := get()
		return apierrors.IsUnauthorized(err), fmt.Sprint("after the Node is deleted: ", err)
	})
}
