package apiserver

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ApplyManifests renders the kustomize directory dir under the repository's
// manifests/ (e.g. "base") and creates, through cs, its objects of the kinds
// the tests need without controllers: Namespaces, ServiceAccounts, RBAC and
// admission policies (a DaemonSet would never run here). keep selects
// objects by kind and name; nil keeps all. Objects that already exist are
// left as they are. Every object decodes strictly: a misspelt field in the
// shipped manifests fails the test.
func ApplyManifests(t testing.TB, cs kubernetes.Interface, dir string, keep func(kind, name string) bool) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..", "..", "manifests", dir)
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), root)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", root, err)
	}
	ctx := context.Background()
	for _, r := range rm.Resources() {
		if keep != nil && !keep(r.GetKind(), r.GetName()) {
			continue
		}
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		decode := func(o any) {
			t.Helper()
			if err := yaml.UnmarshalStrict(b, o); err != nil {
				t.Fatalf("decode %s/%s: %v", r.GetKind(), r.GetName(), err)
			}
		}
		switch r.GetKind() {
		case "Namespace":
			var o corev1.Namespace
			decode(&o)
			_, err = cs.CoreV1().Namespaces().Create(ctx, &o, metav1.CreateOptions{})
		case "ServiceAccount":
			var o corev1.ServiceAccount
			decode(&o)
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRole":
			var o rbacv1.ClusterRole
			decode(&o)
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			decode(&o)
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		case "Role":
			var o rbacv1.Role
			decode(&o)
			_, err = cs.RbacV1().Roles(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
		case "RoleBinding":
			var o rbacv1.RoleBinding
			decode(&o)
			_, err = cs.RbacV1().RoleBindings(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
		case "ValidatingAdmissionPolicy":
			var o admissionv1.ValidatingAdmissionPolicy
			decode(&o)
			_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &o, metav1.CreateOptions{})
		case "ValidatingAdmissionPolicyBinding":
			var o admissionv1.ValidatingAdmissionPolicyBinding
			decode(&o)
			_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &o, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("apply %s/%s: %v", r.GetKind(), r.GetName(), err)
		}
	}
}
