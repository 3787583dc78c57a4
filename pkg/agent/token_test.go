package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// What keepEntryOnUpgrade's documentation rests on: the plugin's kubeconfig
// carries the agent pod's bound (projected) ServiceAccount token, and the
// API server rejects that token as soon as the pod is gone. So with the
// entry kept, pods created between the old agent pod's deletion and the
// new agent's kubeconfig rewrite fail their ADD (fail closed) rather than
// getting rules from the old binary.
func TestBoundTokenDiesWithAgentPod(t *testing.T) {
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
