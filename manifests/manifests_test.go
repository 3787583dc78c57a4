// Package manifests_test renders the kustomize trees with the kustomize
// library (krusty, what `kubectl kustomize` runs) and decodes every object.
package manifests_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/config"
)

func render(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	out := map[string][]byte{}
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		out[r.GetKind()+"/"+r.GetName()] = b
	}
	return out
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		dir         string
		wantKinds   []string
		cniBin      string
		hostConfDir string
		// kubeletArg is the explicit --kubelet-config ("" = the agent
		// searches the known paths under the host root).
		kubeletArg string
	}{
		{".", []string{"Namespace/authbridge-system", "ServiceAccount/authbridge-node", "ClusterRole/authbridge-node", "ClusterRoleBinding/authbridge-node", "ConfigMap/authbridge-node-config", "DaemonSet/authbridge-node"}, "/host/opt/cni/bin", "/etc/cni/net.d", ""},
		{"base", nil, "/host/opt/cni/bin", "/etc/cni/net.d", ""},
		// RHCOS keeps the KubeletConfiguration in /etc/kubernetes/kubelet.conf.
		{"overlays/openshift", []string{"SecurityContextConstraints/authbridge-node", "NetworkAttachmentDefinition/authbridge-cni", "ValidatingAdmissionPolicy/authbridge-pod-attachment", "ValidatingAdmissionPolicyBinding/authbridge-pod-attachment"}, "/host/var/lib/cni/bin", "/etc/kubernetes/cni/net.d", "/host/etc/kubernetes/kubelet.conf"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			for _, k := range tc.wantKinds {
				if objs[k] == nil {
					t.Errorf("%s missing from %s", k, tc.dir)
				}
			}
			var cm struct {
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal(objs["ConfigMap/authbridge-node-config"], &cm); err != nil {
				t.Fatal(err)
			}
			// The shipped config must pass the agent's strict parser and be strict.
			cfg, err := config.ParseAgent([]byte(cm.Data["config.yaml"]))
			if err != nil {
				t.Fatalf("shipped config refused: %v", err)
			}
			if w := cfg.Weakenings(); len(w) != 0 || cfg.AllowCooperative || cfg.RepairPods {
				t.Errorf("shipped config is not strict: weakenings %v", w)
			}
			if cfg.CNIBinDir != tc.cniBin || cfg.HostCNIConfDir != tc.hostConfDir {
				t.Errorf("dirs: bin %s hostConf %s", cfg.CNIBinDir, cfg.HostCNIConfDir)
			}
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(objs["DaemonSet/authbridge-node"], &ds); err != nil {
				t.Fatalf("DaemonSet does not decode strictly: %v", err)
			}
			ps := ds.Spec.Template.Spec
			if !ps.HostNetwork || len(ps.Tolerations) != 1 || ps.Tolerations[0].Operator != "Exists" || ds.Namespace != "authbridge-system" {
				t.Errorf("DaemonSet pod spec: hostNetwork %v tolerations %v ns %s", ps.HostNetwork, ps.Tolerations, ds.Namespace)
			}
			c := ps.Containers[0]
			if c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME env: %+v", c.Env)
			}
			if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("probes/resources: %+v %+v %+v", c.ReadinessProbe, c.LivenessProbe, c.Resources)
			}
			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m.Name
			}
			if mounts["/host"] == "" || mounts["/var/run/authbridge"] == "" || mounts["/etc/authbridge"] == "" {
				t.Errorf("mounts: %v", mounts)
			}
			kubeletArg := ""
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--kubelet-config="); ok {
					kubeletArg = v
				}
			}
			if kubeletArg != tc.kubeletArg || c.Args[0] != "run" {
				t.Errorf("args %v: --kubelet-config %q, want %q", c.Args, kubeletArg, tc.kubeletArg)
			}
		})
	}
}

func TestExamples(t *testing.T) {
	b, err := yaml.YAMLToJSON(render(t, "monitoring")["ServiceMonitor/authbridge-node"])
	if err != nil || !strings.Contains(string(b), "/metrics") {
		t.Fatalf("servicemonitor example: %v %s", err, b)
	}
	objs := render(t, "overlays/with-repair")
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(objs["ClusterRole/authbridge-node-repair"], &cr); err != nil {
		t.Fatal(err)
	}
	if len(cr.Rules) != 1 || strings.Join(cr.Rules[0].Verbs, ",") != "delete" || strings.Join(cr.Rules[0].Resources, ",") != "pods" {
		t.Errorf("repair role grants more than pods delete: %+v", cr.Rules)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	yaml.Unmarshal(objs["ConfigMap/authbridge-node-config"], &cm)
	cfg, err := config.ParseAgent([]byte(cm.Data["config.yaml"]))
	if err != nil || !cfg.RepairPods {
		t.Errorf("with-repair config: %v repairPods=%v", err, cfg.RepairPods)
	}
}
