// Package charts_test keeps the Helm chart and the kustomize tree one
// install: `helm template` of charts/authbridge-node must render the same
// objects as `kubectl kustomize` of the matching manifests directory (the
// kustomize library, krusty, which kubectl kustomize runs), for the
// default values and for each mode an operator switches on (OpenShift,
// monitoring, repairPods). Neither is generated from the other: the
// kustomize tree stays plain YAML that `kubectl apply -k` users patch with
// overlays, the chart stays plain templates `helm install` users set values
// on, and this test is what keeps them equal. helm is the real CLI
// (v3.22.0), built by hack/build-tools.sh.
package charts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/testing/tools"
	"github.com/kagenti/authbridge-node/pkg/config"
)

const chart = "authbridge-node"

type objects map[string]map[string]any

func key(o map[string]any) string {
	md, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%s/%s/%v/%v", o["apiVersion"], o["kind"], md["namespace"], md["name"])
}

func (o objects) keys() []string {
	var ks []string
	for k := range o {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func kustomize(t *testing.T, dirs ...string) objects {
	t.Helper()
	out := objects{}
	for _, dir := range dirs {
		rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../manifests/"+dir)
		if err != nil {
			t.Fatalf("kustomize %s: %v", dir, err)
		}
		for _, r := range rm.Resources() {
			m, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			out[key(m)] = m
		}
	}
	return out
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := tools.For(t, "helm")
	cmd := exec.Command(bin, args...)
	// Keep helm's caches and config out of the user's home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func helmTemplate(t *testing.T, set ...string) objects {
	t.Helper()
	args := []string{"template", chart, chart, "--namespace", "authbridge-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	objs := objects{}
	dec := k8syaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template output: %v", err)
		}
		if m == nil {
			continue
		}
		objs[key(m)] = m
	}
	return objs
}

// normalize makes the two renderings comparable where they differ on
// purpose: the agent's config.yaml is compared as the agent parses it
// (defaults applied, key order and list style irrelevant), and the chart's
// checksum/config pod annotation (it rolls the agents on a config change,
// which kustomize users do with `kubectl rollout restart`) must be there
// and is then dropped.
func normalize(t *testing.T, objs objects, fromHelm bool) {
	t.Helper()
	for k, o := range objs {
		// One representation of numbers (krusty says int, the YAML
		// decoder int64): through JSON both are float64.
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		o = map[string]any{}
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
		objs[k] = o
		if strings.Contains(k, "/ConfigMap/") && strings.HasSuffix(k, "/authbridge-node-config") {
			data := o["data"].(map[string]any)
			cfg, err := config.ParseAgent([]byte(data["config.yaml"].(string)))
			if err != nil {
				t.Fatalf("%s: config.yaml refused by the agent: %v", k, err)
			}
			data["config.yaml"] = fmt.Sprintf("%+v", cfg)
		}
		if strings.Contains(k, "/DaemonSet/") && fromHelm {
			tmpl := o["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
			ann := tmpl["annotations"].(map[string]any)
			if len(fmt.Sprint(ann["checksum/config"])) != 64 {
				t.Errorf("%s: no checksum/config annotation: %v", k, ann)
			}
			delete(ann, "checksum/config")
		}
	}
}

func requireSame(t *testing.T, chartObjs, kustObjs objects) {
	t.Helper()
	normalize(t, chartObjs, true)
	normalize(t, kustObjs, false)
	if got, want := chartObjs.keys(), kustObjs.keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("objects differ:\nhelm      %v\nkustomize %v", got, want)
	}
	for k, want := range kustObjs {
		if got := chartObjs[k]; !reflect.DeepEqual(got, want) {
			g, _ := yaml.Marshal(got)
			w, _ := yaml.Marshal(want)
			t.Errorf("%s differs:\n--- helm\n%s\n--- kustomize\n%s", k, g, w)
		}
	}
}

func TestChartMatchesKustomize(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		dirs []string
		// drop: kustomize objects the chart does not render with these values.
		drop []string
	}{
		// Helm owns the release namespace (--create-namespace): the chart
		// creates it only when asked.
		{"defaults", nil, []string{"base"}, []string{"v1/Namespace/<nil>/authbridge-system"}},
		{"namespace", []string{"namespace.create=true"}, []string{"base"}, nil},
		{"openshift", []string{"namespace.create=true", "openshift.enabled=true"}, []string{"overlays/openshift"}, nil},
		{"monitoring", []string{"namespace.create=true", "monitoring.enabled=true"}, []string{"base", "monitoring"}, nil},
		{"repair", []string{"namespace.create=true", "config.repairPods=true"}, []string{"overlays/with-repair"}, nil},
		// Clusters without ValidatingAdmissionPolicy: the policy and its
		// binding go, nothing else.
		{"no-admission-policy", []string{"namespace.create=true", "admissionPolicy.enabled=false"}, []string{"base"}, []string{
			"admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy/<nil>/authbridge-node-agent-own-node",
			"admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding/<nil>/authbridge-node-agent-own-node",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := kustomize(t, tc.dirs...)
			for _, d := range tc.drop {
				if want[d] == nil {
					t.Fatalf("%s not in the kustomize output %v", d, want.keys())
				}
				delete(want, d)
			}
			requireSame(t, helmTemplate(t, tc.set...), want)
		})
	}
}

// TestChartValuesCoverConfig: values.yaml's config has every key the
// shipped ConfigMap sets, so an operator sees (and can set) each one.
func TestChartValuesCoverConfig(t *testing.T) {
	b, err := os.ReadFile(chart + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config map[string]any `json:"config"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	cm := kustomize(t, "base")["v1/ConfigMap/authbridge-system/authbridge-node-config"]
	var base map[string]any
	if err := yaml.Unmarshal([]byte(cm["data"].(map[string]any)["config.yaml"].(string)), &base); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for k := range v.Config {
		got = append(got, k)
	}
	for k := range base {
		want = append(want, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values.yaml config keys %v, manifests/base config.yaml keys %v", got, want)
	}
}

// TestChartValues: the values operators change reach the objects.
func TestChartValues(t *testing.T) {
	objs := helmTemplate(t,
		"image.repository=registry.example.com/ab", "image.tag=v9",
		"nodeSelector.kubernetes\\.io/os=linux",
		"tolerations[0].key=only-this", "tolerations[0].operator=Exists",
		"config.defaultMode=auto", "kubeletConfig=/host/var/lib/kubelet/config.yaml",
		"monitoring.enabled=true", "monitoring.labels.release=kps")
	ds := objs["apps/v1/DaemonSet/authbridge-system/authbridge-node"]
	b, _ := json.Marshal(ds)
	for _, want := range []string{
		`"image":"registry.example.com/ab:v9"`, `"nodeSelector":{"kubernetes.io/os":"linux"}`,
		`"tolerations":[{"key":"only-this","operator":"Exists"}]`, `"--kubelet-config=/host/var/lib/kubelet/config.yaml"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("DaemonSet lacks %s:\n%s", want, b)
		}
	}
	cm := objs["v1/ConfigMap/authbridge-system/authbridge-node-config"]
	cfg, err := config.ParseAgent([]byte(cm["data"].(map[string]any)["config.yaml"].(string)))
	if err != nil || string(cfg.DefaultMode) != "auto" {
		t.Errorf("config.defaultMode=auto: %v %+v", err, cfg)
	}
	for _, k := range []string{"monitoring.coreos.com/v1/ServiceMonitor/authbridge-system/authbridge-node", "monitoring.coreos.com/v1/PrometheusRule/authbridge-system/authbridge-node", "v1/ConfigMap/authbridge-system/authbridge-node-dashboard"} {
		md, _ := objs[k]["metadata"].(map[string]any)
		labels, _ := md["labels"].(map[string]any)
		if labels["release"] != "kps" {
			t.Errorf("%s: monitoring.labels not applied: %v", k, labels)
		}
	}
	// A changed config rolls the agents.
	sum := func(o objects) any {
		return o["apps/v1/DaemonSet/authbridge-system/authbridge-node"]["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)["checksum/config"]
	}
	if sum(objs) == sum(helmTemplate(t)) {
		t.Error("checksum/config did not change with the config")
	}
}

// TestHelmLint: helm lint --strict, for the defaults and every mode.
func TestHelmLint(t *testing.T) {
	for _, set := range []string{"", "openshift.enabled=true,monitoring.enabled=true,config.repairPods=true,namespace.create=true"} {
		args := []string{"lint", "--strict", chart}
		if set != "" {
			args = append(args, "--set", set)
		}
		out, err := helm(t, args...)
		if err != nil || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("helm %s:\n%s", strings.Join(args, " "), out)
	}
}

// TestDocsValuesTable: every value docs/operations.md's Helm table names
// exists in values.yaml, so the table cannot point at a renamed value.
func TestDocsValuesTable(t *testing.T) {
	b, err := os.ReadFile(chart + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, helmSection, _ := strings.Cut(string(doc), "### Helm\n")
	helmSection, _, _ = strings.Cut(helmSection, "\n### ")
	n := 0
	for _, line := range strings.Split(helmSection, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[1], "`") {
			continue
		}
		for _, f := range strings.Split(cells[1], ",") {
			path := strings.Trim(strings.TrimSpace(f), "`")
			path = strings.TrimSuffix(path, ".*")
			var cur any = values
			for _, p := range strings.Split(path, ".") {
				m, ok := cur.(map[string]any)
				if !ok {
					cur = nil
					break
				}
				cur, ok = m[p]
				if !ok {
					cur = nil
					break
				}
			}
			if cur == nil {
				t.Errorf("docs/operations.md Helm table names %q, not in values.yaml", path)
			}
			n++
		}
	}
	if n < 8 {
		t.Errorf("found %d values in the Helm table of docs/operations.md", n)
	}
}
