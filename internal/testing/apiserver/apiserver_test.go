package apiserver

import (
	"context"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The harness itself: admin can write, a fresh ServiceAccount token from
// the TokenRequest API authenticates but RBAC denies it (no bindings), and
// an impersonated user is denied the same way.
func TestHarness(t *testing.T) {
	srv := Start(t)
	ctx := context.Background()
	admin := srv.AdminClient(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}}}
	if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create node: %v", err)
	}

	cfg, err := srv.ServiceAccountConfig(ctx, "authbridge-system", "authbridge-node")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sa.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("service account without bindings: want Forbidden, got %v", err)
	}
	// Forbidden (not Unauthorized) proves the token authenticated; check the name.
	if se, ok := err.(*apierrors.StatusError); !ok || !contains(se.ErrStatus.Message, "system:serviceaccount:authbridge-system:authbridge-node") {
		t.Fatalf("forbidden message does not name the service account: %v", err)
	}

	imp, err := kubernetes.NewForConfig(srv.ConfigFor("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imp.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("impersonated alice: want Forbidden, got %v", err)
	}
	bad := srv.TokenConfig("not-a-token")
	bc, _ := kubernetes.NewForConfig(bad)
	if _, err := bc.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("bad token: want Unauthorized, got %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Shared starts one server for the whole test binary: a second call returns
// the same, running server.
func TestShared(t *testing.T) {
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatalf("Shared started a second server: %s and %s", a.URL, b.URL)
	}
	if _, err := a.AdminClient(t).Discovery().ServerVersion(); err != nil {
		t.Fatalf("shared server does not answer: %v", err)
	}
}

func TestMain(m *testing.M) { os.Exit(RunTests(m)) }
