// Package examples checks the example workloads in this directory: they
// render with kustomize (the library kubectl embeds, so no binary is needed),
// every object decodes strictly into its Kubernetes API type (a misspelt or
// misplaced field fails), and they say what the docs say they say.
package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

const (
	capableLabel = "authbridge.kagenti.io/egress-redirect-capable"
	proxyURL     = "http://127.0.0.1:8081"
)

// rendered is the decoded output of one kustomize build.
type rendered struct {
	namespaces  map[string]*corev1.Namespace
	configMaps  map[string]*corev1.ConfigMap // by namespace/name
	policies    map[string][]*networkingv1.NetworkPolicy
	deployments []*appsv1.Deployment
	admission   int // ValidatingAdmissionPolicy objects and bindings
}

// clusterScoped reports the kinds of the examples that have no namespace.
func clusterScoped(obj runtime.Object) bool {
	switch obj.(type) {
	case *corev1.Namespace, *admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return true
	}
	return false
}

// render runs kustomize on dir and decodes every object strictly: unknown or
// duplicate fields are errors, as with kubectl apply --validate=strict.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	out := rendered{
		namespaces: map[string]*corev1.Namespace{},
		configMaps: map[string]*corev1.ConfigMap{},
		policies:   map[string][]*networkingv1.NetworkPolicy{},
	}
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		obj, gvk, err := strict.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("strict decode of %s: %v\n%s", r.CurId(), err, y)
		}
		checkMeta(t, obj)
		switch o := obj.(type) {
		case *corev1.Namespace:
			out.namespaces[o.Name] = o
		case *corev1.ConfigMap:
			out.configMaps[o.Namespace+"/"+o.Name] = o
		case *networkingv1.NetworkPolicy:
			out.policies[o.Namespace] = append(out.policies[o.Namespace], o)
		case *appsv1.Deployment:
			out.deployments = append(out.deployments, o)
		case *admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			out.admission++ // manifests/policies, tested against a real API server there
		default:
			t.Fatalf("unexpected kind %s in %s: extend this test", gvk, dir)
		}
	}
	return out
}

// checkMeta validates names and labels as the API server would.
func checkMeta(t *testing.T, obj runtime.Object) {
	t.Helper()
	m, ok := obj.(interface {
		GetName() string
		GetNamespace() string
		GetLabels() map[string]string
		GetAnnotations() map[string]string
	})
	if !ok {
		t.Fatalf("%T has no object meta", obj)
	}
	for _, e := range validation.IsDNS1123Subdomain(m.GetName()) {
		t.Errorf("%T %q: bad name: %s", obj, m.GetName(), e)
	}
	if !clusterScoped(obj) && m.GetNamespace() == "" {
		t.Errorf("%T %q has no namespace", obj, m.GetName())
	}
	checkLabels(t, m.GetName(), m.GetLabels())
	if d, ok := obj.(*appsv1.Deployment); ok {
		checkLabels(t, d.Name+" template", d.Spec.Template.Labels)
	}
}

func checkLabels(t *testing.T, what string, labels map[string]string) {
	t.Helper()
	for k, v := range labels {
		for _, e := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", what, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", what, k, v, e)
		}
	}
}

// effectiveMode resolves a pod's mode with the plugin's own decision
// (podinfo.Decide: the namespace ConfigMap, else the cluster default; an
// annotation may only strengthen it), on a cluster that allows cooperative
// mode and a capable node, and returns the requested mode and its source.
func effectiveMode(t *testing.T, r rendered, d *appsv1.Deployment) (config.Mode, string) {
	t.Helper()
	var nc podinfo.NamespaceConfig
	if cm, ok := r.configMaps[d.Namespace+"/"+config.NamespaceConfigMap]; ok {
		raw, ok := cm.Data[config.NamespaceConfigMapKey]
		if !ok {
			t.Fatalf("%s/%s lacks key %s", cm.Namespace, cm.Name, config.NamespaceConfigMapKey)
		}
		var err error
		if nc, err = podinfo.ParseNamespaceConfig(d.Namespace, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := config.ParseAgent([]byte("allowCooperative: true\nacknowledgeCooperativeRisks: " + config.SecurityModelVersion))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
	pod.Namespace, pod.Name = d.Namespace, d.Name
	state := &nodestate.State{Results: []nodestate.BackendResult{{Backend: redirect.BackendNFTables, Works: true}}}
	dec, err := podinfo.Decide(pod, nc, a.Policy, state, "")
	if err != nil {
		t.Fatalf("%s: the plugin would refuse this pod: %v", d.Name, err)
	}
	return dec.Requested, string(dec.Reason)
}

func TestExamples(t *testing.T) {
	r := render(t, ".")

	if r.admission != 2 {
		t.Errorf("the examples render %d admission objects; want the policy and its binding (component manifests/policies)", r.admission)
	}
	if len(r.deployments) != 3 {
		t.Fatalf("want one Deployment per mode (3), got %d", len(r.deployments))
	}
	byMode := map[config.Mode]*appsv1.Deployment{}
	for _, d := range r.deployments {
		m, how := effectiveMode(t, r, d)
		if byMode[m] != nil {
			t.Fatalf("two example Deployments in mode %s", m)
		}
		byMode[m] = d
		t.Logf("%s/%s: mode %s (%s)", d.Namespace, d.Name, m, how)
		if _, ok := r.namespaces[d.Namespace]; !ok {
			t.Errorf("%s: namespace %s is not part of the examples", d.Name, d.Namespace)
		}
		checkPod(t, d)
		if m != config.ModeEnforceRedirect {
			checkCooperativeNamespace(t, r, d.Namespace)
			checkProxyEnv(t, d)
		}
	}
	for _, m := range config.Modes {
		if byMode[m] == nil {
			t.Errorf("no example Deployment in mode %s", m)
		}
	}

	// The auto example gets its mode from the namespace ConfigMap, not an
	// annotation, so that path is exercised too.
	if d := byMode[config.ModeAuto]; d != nil {
		if _, how := effectiveMode(t, r, d); how != "namespace-configmap" {
			t.Errorf("auto example takes its mode from %s, want the namespace ConfigMap", how)
		}
	}

	if d := byMode[config.ModeEnforceRedirect]; d != nil {
		if !requiresCapableNode(d.Spec.Template.Spec.Affinity) {
			t.Errorf("%s: enforce-redirect example lacks the required nodeAffinity %s In [true]", d.Name, capableLabel)
		}
		// Transparent redirect: the app needs no proxy settings.
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if strings.EqualFold(e.Name, "HTTP_PROXY") {
					t.Errorf("%s/%s sets %s; enforce-redirect does not need it", d.Name, c.Name, e.Name)
				}
			}
		}
	}
}

func requiresCapableNode(a *corev1.Affinity) bool {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return false
	}
	// Terms are ORed: every term must carry the requirement.
	for _, term := range terms {
		found := false
		for _, e := range term.MatchExpressions {
			if e.Key == capableLabel && e.Operator == corev1.NodeSelectorOpIn && slices.Equal(e.Values, []string{"true"}) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkPod: the point of the CNI plugin is that pods need no privilege.
func checkPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.InitContainers) != 0 {
		t.Errorf("%s has init containers; the rules come from the CNI plugin", d.Name)
	}
	if spec.HostNetwork {
		t.Errorf("%s uses hostNetwork", d.Name)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod securityContext lacks runAsNonRoot: true", d.Name)
	}
	var proxy *corev1.Container
	for i, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s has no securityContext", d.Name, c.Name)
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s/%s is privileged", d.Name, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s allows privilege escalation (a process could setuid to the proxy UID)", d.Name, c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s does not drop ALL capabilities", d.Name, c.Name)
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s/%s adds capabilities %v (NET_ADMIN and friends are what this project removes)", d.Name, c.Name, sc.Capabilities.Add)
		}
		if c.Image == "" || !strings.Contains(c.Image, ":") {
			t.Errorf("%s/%s: image %q has no tag", d.Name, c.Name, c.Image)
		}
		if c.Name == config.DefaultSidecarContainerName {
			proxy = &spec.Containers[i]
			continue
		}
		// An app running as the proxy UID would bypass the redirect.
		if sc.RunAsUser == nil || *sc.RunAsUser == 1337 || *sc.RunAsUser == 0 {
			t.Errorf("%s/%s must run as a fixed UID other than 0 and 1337", d.Name, c.Name)
		}
	}
	if proxy == nil {
		t.Fatalf("%s has no container named %s: the plugin would leave it alone", d.Name, config.DefaultSidecarContainerName)
	}
	if proxy.SecurityContext.RunAsUser == nil || *proxy.SecurityContext.RunAsUser != 1337 {
		t.Errorf("%s/%s must run as UID 1337 (proxyUID)", d.Name, proxy.Name)
	}
	ports := map[int32]bool{}
	for _, p := range proxy.Ports {
		ports[p.ContainerPort] = true
	}
	if !ports[8081] || !ports[8082] {
		t.Errorf("%s/%s should declare 8081 (HTTP_PROXY) and 8082 (transparent): %v", d.Name, proxy.Name, proxy.Ports)
	}
}

// checkCooperativeNamespace: a namespace that may run cooperative pods must
// have a default-deny egress NetworkPolicy selecting all pods and allowing DNS.
func checkCooperativeNamespace(t *testing.T, r rendered, ns string) {
	t.Helper()
	for _, p := range r.policies[ns] {
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			continue
		}
		if len(p.Spec.PodSelector.MatchLabels) != 0 || len(p.Spec.PodSelector.MatchExpressions) != 0 {
			continue
		}
		var udp53, tcp53 bool
		for _, rule := range p.Spec.Egress {
			if len(rule.To) == 0 {
				t.Errorf("%s/%s: an egress rule without 'to' allows every destination", ns, p.Name)
			}
			for _, to := range rule.To {
				if to.IPBlock != nil && (to.IPBlock.CIDR == "0.0.0.0/0" || to.IPBlock.CIDR == "::/0") {
					t.Errorf("%s/%s: egress to %s defeats the policy", ns, p.Name, to.IPBlock.CIDR)
				}
			}
			for _, port := range rule.Ports {
				if port.Port != nil && port.Port.IntValue() == 53 {
					switch {
					case port.Protocol != nil && *port.Protocol == corev1.ProtocolUDP:
						udp53 = true
					case port.Protocol != nil && *port.Protocol == corev1.ProtocolTCP:
						tcp53 = true
					}
				}
			}
		}
		if !udp53 || !tcp53 {
			t.Errorf("%s/%s: allow DNS on UDP and TCP 53 (udp=%v tcp=%v)", ns, p.Name, udp53, tcp53)
		}
		return
	}
	t.Errorf("namespace %s may run cooperative pods but has no NetworkPolicy with podSelector {} and policyTypes [Egress]", ns)
}

func checkProxyEnv(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == config.DefaultSidecarContainerName {
			continue
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
			if env[k] != proxyURL {
				t.Errorf("%s/%s: %s = %q, want %s", d.Name, c.Name, k, env[k], proxyURL)
			}
		}
		for _, k := range []string{"NO_PROXY", "no_proxy"} {
			v, ok := env[k]
			if !ok {
				t.Errorf("%s/%s: %s not set", d.Name, c.Name, k)
			}
			// In-cluster upstreams must go through the proxy to get a token.
			for _, bad := range []string{".svc", "cluster.local", "*"} {
				if strings.Contains(v, bad) {
					t.Errorf("%s/%s: %s=%q bypasses the proxy for %q", d.Name, c.Name, k, v, bad)
				}
			}
		}
	}
}

// TestImagesOverridable: an overlay's images: entry replaces every image, so
// the e2e and real installs can swap the stand-in without editing the files.
func TestImagesOverridable(t *testing.T) {
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, abs) // kustomize refuses absolute resource paths
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\nimages:\n  - name: authbridge-standin\n    newName: registry.example.com/authbridge/proxy\n    newTag: v9.9.9\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	r := render(t, overlay)
	n := 0
	for _, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			n++
			if c.Image != "registry.example.com/authbridge/proxy:v9.9.9" {
				t.Errorf("%s/%s: image %q not overridden", d.Name, c.Name, c.Image)
			}
		}
	}
	if n == 0 {
		t.Fatal("no containers rendered")
	}
}

// TestStrictDecodeCatchesTypos proves the decoder used above is strict: the
// same Deployment with one misspelt field must fail.
func TestStrictDecodeCatchesTypos(t *testing.T) {
	src, err := os.ReadFile("enforce-redirect/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	if _, _, err := strict.Decode(src, nil, nil); err != nil {
		t.Fatalf("the unmodified file must decode: %v", err)
	}
	for _, typo := range [][2]string{
		{"requiredDuringSchedulingIgnoredDuringExecution", "requiredDuringSchedulingIgnoreDuringExecution"},
		{"runAsUser: 1337", "runAsUID: 1337"},
		{"matchExpressions", "matchexpressions"},
	} {
		bad := bytes.Replace(src, []byte(typo[0]), []byte(typo[1]), 1)
		if bytes.Equal(bad, src) {
			t.Fatalf("%q not found in the file; update this test", typo[0])
		}
		if _, _, err := strict.Decode(bad, nil, nil); err == nil {
			t.Errorf("strict decode accepted the typo %q", typo[1])
		}
	}
}

// TestValidatorExample: the injector snippet (manifests/examples/validator)
// puts node-agent validate first, unprivileged, before a native sidecar the
// plugin recognises, and runs the UDP check too.
func TestValidatorExample(t *testing.T) {
	r := render(t, "validator")
	if len(r.deployments) != 1 {
		t.Fatalf("want 1 Deployment, got %d", len(r.deployments))
	}
	d := r.deployments[0]
	spec := d.Spec.Template.Spec
	if !requiresCapableNode(spec.Affinity) {
		t.Errorf("%s lacks the required nodeAffinity %s In [true]", d.Name, capableLabel)
	}
	if !podinfo.IsAuthBridgePod(&corev1.Pod{Spec: spec}, []string{config.DefaultSidecarContainerName}) {
		t.Fatalf("%s is not recognised as an AuthBridge pod", d.Name)
	}
	if len(spec.InitContainers) != 2 || spec.InitContainers[0].Name != "authbridge-validate" || spec.InitContainers[1].Name != config.DefaultSidecarContainerName {
		t.Fatalf("init containers must be [authbridge-validate, %s] in that order", config.DefaultSidecarContainerName)
	}
	if p := spec.InitContainers[1].RestartPolicy; p == nil || *p != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s must be a native sidecar (restartPolicy: Always) so it starts after the validator", config.DefaultSidecarContainerName)
	}
	v := spec.InitContainers[0]
	if !slices.Equal(v.Command, []string{"/opt/authbridge/bin/node-agent", "validate", "--check-udp"}) {
		t.Errorf("validator command = %v", v.Command)
	}
	if !strings.HasPrefix(v.Image, "ghcr.io/kagenti/authbridge-node:") {
		t.Errorf("validator image %q: want the node agent image (the validator is its subcommand)", v.Image)
	}
	sc := v.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("validator has no securityContext")
	case sc.RunAsUser == nil || *sc.RunAsUser == 0 || *sc.RunAsUser == 1337:
		t.Error("validator must run as a fixed UID other than 0 and 1337")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("validator allows privilege escalation")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("validator root filesystem is not read-only")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Error("validator must drop ALL capabilities and add none")
	}
	if v.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("validator terminationMessagePolicy = %q, want FallbackToLogsOnError so describe shows the reason", v.TerminationMessagePolicy)
	}
	// The readiness gate names the condition the node agent keeps
	// (podcondition.Type), once.
	if len(spec.ReadinessGates) != 1 || spec.ReadinessGates[0].ConditionType != podcondition.Type {
		t.Errorf("readinessGates = %+v, want exactly [{conditionType: %s}]", spec.ReadinessGates, podcondition.Type)
	}
}
