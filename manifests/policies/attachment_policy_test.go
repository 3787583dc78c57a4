package policies_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// TestAttachmentPolicy runs manifests/components/multus-attachment's
// policy (multus-attachment mode: AuthBridge pods must request the NAD
// default/authbridge-cni) against the real API server. Its binding is
// narrowed here to the test's namespace so the other policy tests of this
// package, sharing the API server, are not affected.
func TestAttachmentPolicy(t *testing.T) {
	cs := srv.AdminClient(t)
	ctx := context.Background()
	ns := "attachment-policy-test"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := "../components/multus-attachment/"
	var p admissionregistrationv1.ValidatingAdmissionPolicy
	var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for file, into := range map[string]any{"policy.yaml": &p, "binding.yaml": &b} {
		raw, err := os.ReadFile(dir + file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(raw, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	b.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create binding: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, b.Name, metav1.DeleteOptions{})
		_ = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, p.Name, metav1.DeleteOptions{})
	})
	withNets := func(name, nets string) *corev1.Pod {
		pod := abPod(name, nonRoot())
		if nets != "" {
			pod.Annotations = map[string]string{pluginconf.AttachmentAnnotation: nets}
		}
		return pod
	}
	// Wait until the apiserver enforces it.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		probe := withNets("probe-"+string(rune('a'+i%26))+time.Now().Format("150405.000000")[7:], "")
		_, err := cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "authbridge-pod-attachment") {
			break
		}
		if err == nil {
			_ = cs.CoreV1().Pods(ns).Delete(ctx, probe.Name, metav1.DeleteOptions{GracePeriodSeconds: int64p(0)})
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy not enforced after 30s (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, c := range []struct{ name, nets string }{
		{"none", ""},
		{"own-namespace", "authbridge-cni"},
		{"other-nad", "default/macvlan"},
		{"other-namespace", "team/authbridge-cni"},
		{"json-without-namespace", `[{"name":"authbridge-cni"}]`},
		{"json-other-namespace", `[{"name":"authbridge-cni","namespace":"team"}]`},
		{"prefix-name", "default/authbridge-cni-x"},
	} {
		t.Run("refused/"+c.name, func(t *testing.T) {
			_, err := cs.CoreV1().Pods(ns).Create(ctx, withNets("r-"+c.name, c.nets), metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), "default/authbridge-cni") || !strings.Contains(err.Error(), pluginconf.AttachmentAnnotation) {
				t.Fatalf("create with %q: %v; want refused naming the annotation and the NAD", c.nets, err)
			}
		})
	}
	for _, c := range []struct{ name, nets string }{
		{"list", "default/authbridge-cni"},
		{"list-ifname-among-others", "default/macvlan, default/authbridge-cni@net9"},
		{"json", `[{"name":"authbridge-cni","namespace":"default"}]`},
		{"json-namespace-first", `[ {"namespace": "default", "interface": "net1", "name": "authbridge-cni"} ]`},
	} {
		t.Run("admitted/"+c.name, func(t *testing.T) {
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, withNets("a-"+c.name, c.nets), metav1.CreateOptions{}); err != nil {
				t.Fatalf("create with %q refused: %v", c.nets, err)
			}
		})
	}
	t.Run("update", func(t *testing.T) {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, "a-list", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Annotations[pluginconf.AttachmentAnnotation] = "default/macvlan"
		if _, err := cs.CoreV1().Pods(ns).Update(ctx, pod, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "cannot be removed") {
			t.Fatalf("removing the attachment: %v; want refused", err)
		}
		pod, _ = cs.CoreV1().Pods(ns).Get(ctx, "a-list", metav1.GetOptions{})
		pod.Labels = map[string]string{"touched": "yes"}
		if _, err := cs.CoreV1().Pods(ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("an unrelated update refused: %v", err)
		}
	})
	t.Run("not an AuthBridge pod", func(t *testing.T) {
		plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, plain, metav1.CreateOptions{}); err != nil {
			t.Fatalf("refused: %v", err)
		}
	})
}

// TestAttachmentNAD: the shipped NetworkAttachmentDefinition names what the
// plugin and the agent define (pkg/pluginconf): name, namespace, type,
// entryFile under the default credentialDir.
func TestAttachmentNAD(t *testing.T) {
	raw, err := os.ReadFile("../components/multus-attachment/nad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var nad struct {
		Metadata struct{ Name, Namespace string }
		Spec     struct{ Config string }
	}
	if err := yaml.Unmarshal(raw, &nad); err != nil {
		t.Fatal(err)
	}
	var conf map[string]string
	if err := yaml.Unmarshal([]byte(nad.Spec.Config), &conf); err != nil {
		t.Fatalf("spec.config: %v", err)
	}
	want := map[string]string{"cniVersion": "1.0.0", "name": pluginconf.AttachmentName, "type": pluginconf.PluginType, pluginconf.EntryFileKey: config.DefaultCredentialDir + "/" + pluginconf.EntryFileName}
	if nad.Metadata.Name != pluginconf.AttachmentName || nad.Metadata.Namespace != pluginconf.AttachmentNamespace || len(conf) != len(want) {
		t.Fatalf("NAD %+v config %v", nad.Metadata, conf)
	}
	for k, v := range want {
		if conf[k] != v {
			t.Errorf("spec.config %s = %q, want %q", k, conf[k], v)
		}
	}
}
