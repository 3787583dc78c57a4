package podcondition_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
)

func mkPod(t *testing.T, cs kubernetes.Interface, ns, name, node, sa string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// No controllers run: create the ServiceAccount the admission plugin looks up.
	if sa == "" {
		sa = "default"
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "authbridge-proxy", Image: "x:1"}}},
	}
	p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConditionOwnNodeOnly runs against a real kube-apiserver with the
// shipped RBAC and admission policy, authenticating as the agent with a
// ServiceAccount token bound to an agent pod on node-a (as the kubelet's
// projected token is): the condition is written on node-a's pod, kept
// without a write when unchanged, flips with a new transition time, and a
// write to node-b's pod (or node-b itself) is refused naming the nodes.
func TestConditionOwnNodeOnly(t *testing.T) {
	srv := apiserver.Start(t)
	admin := srv.AdminClient(t)
	ctx := context.Background()
	apiserver.ApplyManifests(t, admin, "base", nil)
	for _, n := range []string{"node-a", "node-b"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	agentPod := mkPod(t, admin, "authbridge-system", "authbridge-node-a", "node-a", "authbridge-node")
	secs := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts("authbridge-system").CreateToken(ctx, "authbridge-node", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := kubernetes.NewForConfig(srv.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}

	// The API server loads admission policies through an informer: wait
	// until the policy is in force (a write to node-b refused) before the
	// assertions, so none of them passes only because it was not loaded yet.
	patch := []byte(`{"metadata":{"labels":{"authbridge.kagenti.io/egress-redirect":"nftables"}}}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := agent.CoreV1().Nodes().Patch(ctx, "node-b", types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && strings.Contains(err.Error(), "target on node node-b") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admission policy not in force after 30 s: patch node-b: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	own := mkPod(t, admin, "team", "agent-on-a", "node-a", "")
	other := mkPod(t, admin, "team", "agent-on-b", "node-b", "")

	t0 := time.Now().Add(-time.Minute)
	wrote, err := podcondition.Set(ctx, agent, own, podcondition.NotEnforced(podcondition.ReasonRulesMissing, "no rules"), t0)
	if err != nil || !wrote {
		t.Fatalf("own-node pod: wrote=%v err=%v", wrote, err)
	}
	own, _ = admin.CoreV1().Pods("team").Get(ctx, own.Name, metav1.GetOptions{})
	c := podcondition.Current(own)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != podcondition.ReasonRulesMissing {
		t.Fatalf("condition after first write: %+v", c)
	}
	// Unchanged: no write.
	if wrote, err := podcondition.Set(ctx, agent, own, podcondition.NotEnforced(podcondition.ReasonRulesMissing, "no rules"), time.Now()); err != nil || wrote {
		t.Fatalf("unchanged state: wrote=%v err=%v, want no write", wrote, err)
	}
	// Flip to True: a new transition time, other conditions untouched.
	v := podcondition.Verified("nftables", []string{"ipv4"})
	if wrote, err := podcondition.Set(ctx, agent, own, v, time.Now()); err != nil || !wrote {
		t.Fatalf("flip to True: wrote=%v err=%v", wrote, err)
	}
	own, _ = admin.CoreV1().Pods("team").Get(ctx, own.Name, metav1.GetOptions{})
	c2 := podcondition.Current(own)
	if c2 == nil || c2.Status != corev1.ConditionTrue || c2.Reason != podcondition.ReasonVerified || !strings.Contains(c2.Message, "nftables") {
		t.Fatalf("condition after flip: %+v", c2)
	}
	if !c2.LastTransitionTime.After(c.LastTransitionTime.Time) {
		t.Errorf("lastTransitionTime did not move on the flip: %v -> %v", c.LastTransitionTime, c2.LastTransitionTime)
	}

	// Another node's pod: refused by the admission policy.
	_, err = podcondition.Set(ctx, agent, other, v, time.Now())
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "token bound to node node-a, target on node node-b") {
		t.Fatalf("other node's pod: err = %v, want the policy's refusal", err)
	}
	// Another Node object: refused too; its own Node: allowed.
	if _, err := agent.CoreV1().Nodes().Patch(ctx, "node-b", types.MergePatchType, patch, metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "target on node node-b") {
		t.Fatalf("patch node-b: err = %v, want the policy's refusal", err)
	}
	if _, err := agent.CoreV1().Nodes().Patch(ctx, "node-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch own node: %v", err)
	}
	// A recreated pod with the same name (new UID) is never written with the
	// old object's state: the UID precondition fails.
	if err := admin.CoreV1().Pods("team").Delete(ctx, own.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	mkPod(t, admin, "team", own.Name, "node-a", "")
	stale := own.DeepCopy()
	stale.Status.Conditions = nil
	if _, err := podcondition.Set(ctx, agent, stale, v, time.Now()); err == nil {
		t.Fatal("write for a recreated pod with the old UID succeeded")
	}
}
