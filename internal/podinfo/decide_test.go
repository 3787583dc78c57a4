package podinfo

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func abPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "agent", Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app"}, {Name: config.DefaultSidecarContainerName},
		}},
	}
}

func withRuntimeClass(p *corev1.Pod, rc string) *corev1.Pod {
	p.Spec.RuntimeClassName = &rc
	return p
}

func withDefaultHandler(s *nodestate.State, h string) *nodestate.State {
	c := *s
	c.DefaultRuntimeHandler = h
	return &c
}

func policy(mut func(*config.Policy)) config.Policy {
	p := config.Policy{}
	if mut != nil {
		mut(&p)
	}
	return p.WithDefaults()
}

func allowCoop(p *config.Policy) {
	p.AllowCooperative = true
	p.AcknowledgeCooperativeRisks = config.SecurityModelVersion
}

var (
	capable = &nodestate.State{Results: []nodestate.BackendResult{
		{Backend: redirect.BackendNFTables, Works: false, Error: "netlink: operation not supported"},
		{Backend: redirect.BackendIPTablesNFT, Works: true},
		{Backend: redirect.BackendIPTablesLegacy, Works: true},
	}}
	incapable = &nodestate.State{Results: []nodestate.BackendResult{
		{Backend: redirect.BackendNFTables, Error: "netlink: operation not supported"},
		{Backend: redirect.BackendIPTablesNFT, Error: "exec: iptables-nft: not found"},
		{Backend: redirect.BackendIPTablesLegacy, Error: "can't initialize iptables table `nat'"},
	}}
)

func TestDecide(t *testing.T) {
	ann := func(v string) map[string]string { return map[string]string{config.AnnotationEgressEnforcement: v} }
	nativeSidecar := abPod(nil)
	nativeSidecar.Spec.Containers = []corev1.Container{{Name: "app"}}
	always := corev1.ContainerRestartPolicyAlways
	nativeSidecar.Spec.InitContainers = []corev1.Container{{Name: config.DefaultSidecarContainerName, RestartPolicy: &always}}
	plainInit := abPod(nil)
	plainInit.Spec.Containers = []corev1.Container{{Name: "app"}}
	plainInit.Spec.InitContainers = []corev1.Container{{Name: config.DefaultSidecarContainerName}}
	noSidecar := abPod(ann("none"))
	noSidecar.Spec.Containers = []corev1.Container{{Name: "app"}}
	customName := abPod(nil)
	customName.Spec.Containers = []corev1.Container{{Name: "my-proxy"}}

	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      NamespaceConfig
		policy  config.Policy
		state   *nodestate.State
		handler string // the pod's RuntimeClass handler
		want    Decision
		wantErr []string
	}{
		{name: "default enforces with working backends in policy order", pod: abPod(nil), policy: policy(nil), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "policy order respected", pod: abPod(nil), state: capable,
			policy: policy(func(p *config.Policy) {
				p.Backends = []string{redirect.BackendIPTablesLegacy, redirect.BackendIPTablesNFT}
			}),
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesLegacy, redirect.BackendIPTablesNFT}}},
		{name: "no sidecar is skipped even with an annotation", pod: noSidecar, policy: policy(nil), state: nil,
			want: Decision{Mode: podmode.Skip, Reason: podmode.ReasonNoSidecar}},
		{name: "native sidecar recognised", pod: nativeSidecar, policy: policy(nil), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "plain init container is not a sidecar", pod: plainInit, policy: policy(nil), state: capable,
			want: Decision{Mode: podmode.Skip, Reason: podmode.ReasonNoSidecar}},
		{name: "configurable sidecar names", pod: customName, state: capable,
			policy: policy(func(p *config.Policy) { p.SidecarContainerNames = []string{"my-proxy"} }),
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		// An annotation only strengthens its namespace's mode.
		{name: "annotation none below the cluster default is refused", pod: abPod(ann("none")), policy: policy(allowCoop), state: capable,
			wantErr: []string{"team/agent", "annotation kagenti.io/egress-enforcement", `"none" is weaker than "enforce-redirect"`, "cluster default", "may only strengthen", `egressEnforcement: "none"`, "ConfigMap team/authbridge-runtime-config key config.yaml"}},
		{name: "annotation none below the namespace's enforce is refused", pod: abPod(ann("none")), ns: NamespaceConfig{EgressEnforcement: config.ModeEnforceRedirect}, policy: policy(func(p *config.Policy) { allowCoop(p); p.DefaultMode = config.ModeNone }), state: capable,
			wantErr: []string{`"none" is weaker than "enforce-redirect" from ConfigMap team/authbridge-runtime-config`}},
		{name: "annotation auto below the namespace's enforce is refused", pod: abPod(ann("auto")), ns: NamespaceConfig{EgressEnforcement: config.ModeEnforceRedirect}, policy: policy(allowCoop), state: incapable,
			wantErr: []string{`"auto" is weaker than "enforce-redirect"`}},
		{name: "annotation none below the namespace's auto is refused", pod: abPod(ann("none")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(allowCoop), state: capable,
			wantErr: []string{`"none" is weaker than "auto"`}},
		{name: "annotation enforce strengthens the namespace's auto", pod: abPod(ann("enforce-redirect")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(allowCoop), state: incapable,
			wantErr: []string{"no redirect backend works"}},
		{name: "annotation auto strengthens a cluster default none", pod: abPod(ann("auto")), policy: policy(func(p *config.Policy) { allowCoop(p); p.DefaultMode = config.ModeNone }), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonAnnotation, Requested: config.ModeAuto,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "annotation none without allowCooperative fails", pod: abPod(ann("none")), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(nil), state: capable,
			wantErr: []string{"team/agent", `"none"`, "annotation kagenti.io/egress-enforcement", "not allowed", "allowCooperative: true", "acknowledgeCooperativeRisks", config.SecurityModelVersion, config.SecurityModelDoc, `"enforce-redirect"`}},
		{name: "annotation none with allowCooperative is cooperative where the namespace allows none", pod: abPod(ann("none")), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonAnnotation, Requested: config.ModeNone}},
		{name: "annotation none needs no node state", pod: abPod(ann("none")), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(allowCoop), state: nil,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonAnnotation, Requested: config.ModeNone}},
		{name: "annotation strengthens the namespace", pod: abPod(ann("enforce-redirect")), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonAnnotation, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "namespace beats default", pod: abPod(nil), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonNamespaceConfigMap, Requested: config.ModeNone}},
		{name: "namespace none without allow names the ConfigMap", pod: abPod(nil), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(nil), state: capable,
			wantErr: []string{"ConfigMap team/authbridge-runtime-config", "not allowed"}},
		{name: "cluster default none", pod: abPod(nil), policy: policy(func(p *config.Policy) { allowCoop(p); p.DefaultMode = config.ModeNone }), state: nil,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonClusterDefault, Requested: config.ModeNone}},
		{name: "unknown annotation value", pod: abPod(ann("off")), policy: policy(allowCoop), state: capable,
			wantErr: []string{`"off"`, "annotation kagenti.io/egress-enforcement", `"enforce-redirect", "auto", "none"`}},
		{name: "unknown namespace value", pod: abPod(nil), ns: NamespaceConfig{EgressEnforcement: "strict"}, policy: policy(nil), state: capable,
			wantErr: []string{`"strict"`, "authbridge-runtime-config", "egressEnforcement"}},
		{name: "auto on a capable node enforces", pod: abPod(ann("auto")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(nil), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonAnnotation, Requested: config.ModeAuto,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "auto on an incapable node is cooperative when allowed", pod: abPod(ann("auto")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(allowCoop), state: incapable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonAutoIncapableNode, Requested: config.ModeAuto}},
		{name: "auto on an incapable node fails when not allowed", pod: abPod(ann("auto")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(nil), state: incapable,
			wantErr: []string{"no working redirect backend", "iptables-nft: exec: iptables-nft: not found", "allowCooperative"}},
		{name: "auto with backends outside the policy is incapable", pod: abPod(ann("auto")), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, state: capable,
			policy: policy(func(p *config.Policy) { allowCoop(p); p.Backends = []string{redirect.BackendNFTables} }),
			want:   Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonAutoIncapableNode, Requested: config.ModeAuto}},
		{name: "enforce on an incapable node fails closed naming each probe error", pod: abPod(nil), policy: policy(allowCoop), state: incapable,
			wantErr: []string{"no redirect backend works", "nftables: netlink: operation not supported", "iptables-legacy: can't initialize"}},
		{name: "enforce without node state", pod: abPod(nil), policy: policy(nil), state: nil,
			wantErr: []string{"node state"}},
		// VM sandboxes: rules in the pod netns never see the guest's traffic.
		{name: "enforce in a Kata pod fails closed", pod: withRuntimeClass(abPod(nil), "kata-qemu"), policy: policy(allowCoop), state: capable,
			wantErr: []string{"team/agent", `runtime class "kata-qemu"`, "VM sandbox", "bypasses netfilter", "proxy-init", "vmRuntimeClasses"}},
		{name: "auto in a peer-pods pod is cooperative when allowed", pod: withRuntimeClass(abPod(ann("auto")), "kata-remote"), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonVMRuntimeClass, Requested: config.ModeAuto}},
		{name: "auto in a Kata pod fails when cooperative is not allowed", pod: withRuntimeClass(abPod(ann("auto")), "kata"), ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(nil), state: capable,
			wantErr: []string{"VM sandbox", "not allowed", "allowCooperative"}},
		{name: "none in a Kata pod is plain cooperative", pod: withRuntimeClass(abPod(ann("none")), "kata"), ns: NamespaceConfig{EgressEnforcement: config.ModeNone}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonAnnotation, Requested: config.ModeNone}},
		// Runtime handlers: only those whose traffic crosses the pod netns.
		{name: "gVisor RuntimeClass fails closed", pod: withRuntimeClass(abPod(nil), "gvisor"), handler: "runsc", policy: policy(allowCoop), state: capable,
			wantErr: []string{"team/agent", `runtime handler "runsc"`, `RuntimeClass "gvisor"`, "netfilterRuntimeHandlers", "sandboxed runtime"}},
		{name: "auto with gVisor is cooperative (sandboxed-runtime)", pod: withRuntimeClass(abPod(nil), "gvisor"), handler: "runsc", ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(allowCoop), state: capable,
			want: Decision{Mode: podmode.Cooperative, Reason: podmode.ReasonSandboxedRuntime, Requested: config.ModeAuto}},
		{name: "auto with gVisor fails when cooperative is not allowed", pod: withRuntimeClass(abPod(nil), "gvisor"), handler: "runsc", ns: NamespaceConfig{EgressEnforcement: config.ModeAuto}, policy: policy(nil), state: capable,
			wantErr: []string{`runtime handler "runsc"`, "not allowed"}},
		{name: "Kata under a RuntimeClass name vmRuntimeClasses misses", pod: withRuntimeClass(abPod(nil), "secure"), handler: "kata-qemu", policy: policy(nil), state: capable,
			wantErr: []string{`runtime handler "kata-qemu"`, `RuntimeClass "secure"`}},
		{name: "node whose default handler is a VM", pod: abPod(nil), policy: policy(nil), state: withDefaultHandler(capable, "kata"),
			wantErr: []string{`runtime handler "kata"`, "the node's default handler"}},
		{name: "node whose default handler is runc enforces", pod: abPod(nil), policy: policy(nil), state: withDefaultHandler(capable, "runc"),
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "an unknown node default handler is refused when \"\" is not listed", pod: abPod(nil), state: capable,
			policy:  policy(func(p *config.Policy) { p.NetfilterRuntimeHandlers = []string{"runc", "crun"} }),
			wantErr: []string{`runtime handler ""`, "could not read"}},
		{name: "netfilterRuntimeHandlers is configurable", pod: withRuntimeClass(abPod(nil), "youki"), handler: "youki", state: capable,
			policy: policy(func(p *config.Policy) { p.NetfilterRuntimeHandlers = []string{"runc", "youki"} }),
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "a runc RuntimeClass is enforced", pod: withRuntimeClass(abPod(nil), "runc-hardened"), handler: "runc", policy: policy(nil), state: capable,
			want: Decision{Mode: podmode.EnforceRedirect, Reason: podmode.ReasonClusterDefault, Requested: config.ModeEnforceRedirect,
				Backends: []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy}}},
		{name: "vmRuntimeClasses is configurable (exact names)", pod: withRuntimeClass(abPod(nil), "gvisor-vm"), state: capable,
			policy:  policy(func(p *config.Policy) { p.VMRuntimeClasses = []string{"gvisor-vm"} }),
			wantErr: []string{`runtime class "gvisor-vm"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(tc.pod, tc.ns, tc.policy, tc.state, tc.handler)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Decide = %+v, want error", got)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := Decide(abPod(nil), NamespaceConfig{}, policy(nil), nil, ""); !errors.Is(err, ErrNoNodeState) {
		t.Fatalf("missing node state: error %v does not wrap ErrNoNodeState", err)
	}
}

func TestResolvers(t *testing.T) {
	st := &nodestate.State{ClusterDNS: []string{"10.96.0.10", "fd00:10::a"}, NodeResolvers: []string{"192.168.1.1"}}
	mk := func(p corev1.DNSPolicy, ns ...string) *corev1.Pod {
		pod := abPod(nil)
		pod.Spec.DNSPolicy = p
		if ns != nil {
			pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: ns}
		}
		return pod
	}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	allowNS := func(cidrs ...string) config.Policy {
		return policy(func(p *config.Policy) { p.AllowedPodNameservers = cidrs })
	}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		policy  config.Policy
		state   *nodestate.State
		want    []netip.Addr
		wantErr string
	}{
		{"unset is ClusterFirst", mk(""), policy(nil), st, addrs("10.96.0.10", "fd00:10::a"), ""},
		{"ClusterFirst from node state", mk(corev1.DNSClusterFirst), policy(nil), st, addrs("10.96.0.10", "fd00:10::a"), ""},
		{"ClusterFirstWithHostNet", mk(corev1.DNSClusterFirstWithHostNet), policy(nil), st, addrs("10.96.0.10", "fd00:10::a"), ""},
		{"policy clusterDNS overrides node state", mk(corev1.DNSClusterFirst), policy(func(p *config.Policy) { p.ClusterDNS = []string{"10.0.0.53"} }), st, addrs("10.0.0.53"), ""},
		{"ClusterFirst plus dnsConfig naming the cluster DNS, deduplicated", mk(corev1.DNSClusterFirst, "192.168.1.1", "10.96.0.10"), policy(nil), st, addrs("10.96.0.10", "fd00:10::a", "192.168.1.1"), ""},
		{"Default uses node resolvers", mk(corev1.DNSDefault), policy(nil), st, addrs("192.168.1.1"), ""},
		{"Default plus allowed dnsConfig", mk(corev1.DNSDefault, "8.8.8.8"), allowNS("8.8.8.0/24"), st, addrs("192.168.1.1", "8.8.8.8"), ""},
		{"None uses allowed dnsConfig only", mk(corev1.DNSNone, "9.9.9.9", "2001:db8::53"), allowNS("9.9.9.9/32", "2001:db8::/64"), st, addrs("9.9.9.9", "2001:db8::53"), ""},
		{"None naming the cluster DNS", mk(corev1.DNSNone, "fd00:10::a"), policy(nil), st, addrs("fd00:10::a"), ""},
		{"None naming the policy clusterDNS", mk(corev1.DNSNone, "10.0.0.53"), policy(func(p *config.Policy) { p.ClusterDNS = []string{"10.0.0.53"} }), nil, addrs("10.0.0.53"), ""},
		// The pod spec author must not pick a direct, unproxied DNS peer.
		{"ClusterFirst plus foreign dnsConfig refused", mk(corev1.DNSClusterFirst, "1.1.1.1"), policy(nil), st, nil, "nameserver 1.1.1.1 in spec.dnsConfig.nameservers"},
		{"Default plus foreign dnsConfig refused", mk(corev1.DNSDefault, "8.8.8.8"), policy(nil), st, nil, "add it to allowedPodNameservers in the authbridge node agent config, or remove it"},
		{"None with foreign dnsConfig refused", mk(corev1.DNSNone, "9.9.9.9"), policy(nil), st, nil, "9.9.9.9"},
		{"None outside allowedPodNameservers refused", mk(corev1.DNSNone, "9.9.9.9", "9.9.10.1"), allowNS("9.9.9.0/24"), st, nil, "nameserver 9.9.10.1"},
		{"None foreign without node state refused", mk(corev1.DNSNone, "10.96.0.10"), policy(nil), nil, nil, "allowedPodNameservers"},
		{"None without nameservers", mk(corev1.DNSNone), policy(nil), st, nil, ""},
		{"ClusterFirst with no cluster DNS anywhere", mk(corev1.DNSClusterFirst), policy(nil), &nodestate.State{}, nil, "set clusterDNS in the authbridge node agent config"},
		{"ClusterFirst without node state", mk(corev1.DNSClusterFirst), policy(nil), nil, nil, "clusterDNS"},
		{"bad nameserver", mk(corev1.DNSNone, "dns.example"), policy(nil), st, nil, `"dns.example" from the pod's dnsConfig.nameservers`},
		{"bad node state entry", mk(corev1.DNSClusterFirst), policy(nil), &nodestate.State{ClusterDNS: []string{"x"}}, nil, "node state's clusterDNS"},
		{"unknown dnsPolicy", mk("Whatever"), policy(nil), st, nil, `unknown dnsPolicy "Whatever"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolvers(tc.pod, tc.policy, tc.state)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolvers err = %v, want mention of %q", err, tc.wantErr)
				}
				if strings.Contains(tc.name, "refused") && !errors.Is(err, ErrPodNameserverNotAllowed) {
					t.Fatalf("Resolvers err = %v, want ErrPodNameserverNotAllowed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Resolvers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseNamespaceConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    config.Mode
		wantErr []string
	}{
		{"egressEnforcement: none\n", config.ModeNone, nil},
		{"egressEnforcement: auto\nproxy:\n  logLevel: debug\n", config.ModeAuto, nil},
		{"otherKey: 1\n", "", nil},
		{"", "", nil},
		{"egressEnforcement: disabled\n", "", []string{"namespace team ConfigMap authbridge-runtime-config key config.yaml field egressEnforcement", `"disabled"`, `"enforce-redirect", "auto", "none"`}},
		{"egressEnforcement: [none]\n", "", []string{"field egressEnforcement", "not a string"}},
		{"egressEnforcement: none\n  bad: : indent", "", []string{"not valid YAML", "authbridge-runtime-config"}},
	}
	for _, tc := range tests {
		got, err := ParseNamespaceConfig("team", []byte(tc.in))
		if tc.wantErr != nil {
			if err == nil {
				t.Errorf("%q: got %+v, want error", tc.in, got)
				continue
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q: error %q does not mention %q", tc.in, err, s)
				}
			}
			continue
		}
		if err != nil || got.EgressEnforcement != tc.want {
			t.Errorf("%q: got %+v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzDecideAnnotation feeds arbitrary annotation values and namespace
// documents through the parsers: never a panic, and a value is accepted only
// when it is exactly one of the modes.
func FuzzDecideAnnotation(f *testing.F) {
	for _, s := range []string{"none", "auto", "enforce-redirect", "", " none ", "NONE", "\x00", "enforce-redirect\n"} {
		f.Add(s, "egressEnforcement: "+s)
	}
	f.Fuzz(func(t *testing.T, ann, doc string) {
		p := policy(allowCoop)
		d, err := Decide(abPod(map[string]string{config.AnnotationEgressEnforcement: ann}), NamespaceConfig{}, p, capable, "")
		if err == nil {
			if _, perr := config.ParseMode(strings.TrimSpace(ann)); perr != nil {
				t.Fatalf("annotation %q accepted as %+v", ann, d)
			}
		}
		nc, err := ParseNamespaceConfig("ns", []byte(doc))
		if err == nil && nc.EgressEnforcement != "" {
			if _, perr := config.ParseMode(string(nc.EgressEnforcement)); perr != nil {
				t.Fatalf("namespace doc %q gave invalid mode %q", doc, nc.EgressEnforcement)
			}
		}
	})
}
