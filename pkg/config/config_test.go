package config

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func TestParseAgentDefaultsAreStrict(t *testing.T) {
	// An empty ConfigMap key, an empty document and an empty object all mean
	// "all defaults", and the defaults must be the strict ones.
	for _, in := range []string{"", "\n", "{}", "null", "# only a comment\n"} {
		a, err := ParseAgent([]byte(in))
		if err != nil {
			t.Fatalf("ParseAgent(%q): %v", in, err)
		}
		if a.DefaultMode != ModeEnforceRedirect {
			t.Errorf("ParseAgent(%q).DefaultMode = %q, want %q", in, a.DefaultMode, ModeEnforceRedirect)
		}
		if a.AllowCooperative {
			t.Errorf("ParseAgent(%q).AllowCooperative = true, want false", in)
		}
		if a.AcknowledgeCooperativeRisks != "" {
			t.Errorf("ParseAgent(%q).AcknowledgeCooperativeRisks = %q, want empty", in, a.AcknowledgeCooperativeRisks)
		}
		if !reflect.DeepEqual(a.Backends, redirect.AllBackends) {
			t.Errorf("Backends = %v, want %v", a.Backends, redirect.AllBackends)
		}
		if !reflect.DeepEqual(a.SidecarContainerNames, []string{"authbridge-proxy"}) {
			t.Errorf("SidecarContainerNames = %v, want [authbridge-proxy]", a.SidecarContainerNames)
		}
		checks := []struct {
			name      string
			got, want any
		}{
			{"proxyUID", a.ProxyUID, uint32(1337)},
			{"outboundPort", a.OutboundPort, uint16(8082)},
			{"inboundRedirect", a.InboundRedirect, false},
			{"inboundPort", a.InboundPort, uint16(8083)},
			{"mark", a.Mark, uint32(0x539)},
			{"markMask", a.MarkMask, uint32(0xfff)},
			{"cniBinDir", a.CNIBinDir, "/host/opt/cni/bin"},
			{"cniConfDir", a.CNIConfDir, "/host/etc/cni/net.d"},
			{"hostCNIConfDir", a.HostCNIConfDir, "/etc/cni/net.d"},
			{"stateDir", a.StateDir, "/var/run/authbridge"},
			{"probeInterval", a.ProbeInterval.Duration, 5 * time.Minute},
			{"verifyInterval", a.VerifyInterval.Duration, 30 * time.Second},
			{"keepEntryOnUpgrade (removed)", a.RemovedKeepEntryOnUpgrade == nil, true},
			{"repairPods", a.RepairPods, false},
			{"metricsAddr", a.MetricsAddr, ":9860"},
			{"logLevel", a.LogLevel, "info"},
			{"cniInstallMode", a.CNIInstallMode, InstallAuto},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("ParseAgent(%q): %s = %v, want %v", in, c.name, c.got, c.want)
			}
		}
		if n := len(a.ExcludeOutboundCIDRs) + len(a.ExcludeOutboundPorts) + len(a.ExcludeInboundPorts) + len(a.ClusterDNS); n != 0 {
			t.Errorf("ParseAgent(%q): default exclusions/clusterDNS not empty: %+v", in, a.Policy)
		}
		if w := a.Weakenings(); len(w) != 0 {
			t.Errorf("ParseAgent(%q).Weakenings() = %v, want none", in, w)
		}
	}
}

func TestParseAgentFullConfig(t *testing.T) {
	yes := true
	// Every documented key, in the shape docs/operations.md shows it.
	in := `
defaultMode: auto
allowCooperative: true
acknowledgeCooperativeRisks: security-model-v2
backends: [iptables-nft, nftables]
sidecarContainerNames: [authbridge-proxy, envoy-proxy]
proxyUID: 1500
outboundPort: 15001
inboundRedirect: true
inboundPort: 15006
excludeInboundPorts: [15020, 15021]
excludeOutboundCIDRs: [169.254.169.254/32, "fd00::/8"]
excludeOutboundPorts: [443]
mark: 0x539
markMask: 0xfff
clusterDNS: [10.96.0.10, "fd00:10:96::a"]
cniBinDir: /host/var/lib/cni/bin
cniConfDir: /host/etc/kubernetes/cni/net.d
hostCNIConfDir: /etc/kubernetes/cni/net.d
stateDir: /run/authbridge
credentialDir: /var/lib/authbridge-node
probeInterval: 90s
verifyInterval: 15s
keepEntryOnUpgrade: true
repairPods: true
excludeNamespaces: [kube-system, openshift-dns]
metricsAddr: 127.0.0.1:9861
logLevel: debug
cniInstallMode: multus-attachment
`
	a, err := ParseAgent([]byte(in))
	if err != nil {
		t.Fatalf("ParseAgent: %v", err)
	}
	want := Agent{
		Policy: Policy{
			DefaultMode:                 ModeAuto,
			AllowCooperative:            true,
			AcknowledgeCooperativeRisks: SecurityModelVersion,
			Backends:                    []string{"iptables-nft", "nftables"},
			SidecarContainerNames:       []string{"authbridge-proxy", "envoy-proxy"},
			VMRuntimeClasses:            []string{DefaultVMRuntimeClasses},
			NetfilterRuntimeHandlers:    []string{"runc", "crun", ""},
			ProxyUID:                    1500,
			OutboundPort:                15001,
			InboundRedirect:             true,
			InboundPort:                 15006,
			ExcludeInboundPorts:         []uint16{15020, 15021},
			ExcludeOutboundCIDRs:        []string{"169.254.169.254/32", "fd00::/8"},
			ExcludeOutboundPorts:        []uint16{443},
			Mark:                        0x539,
			MarkMask:                    0xfff,
			ClusterDNS:                  []string{"10.96.0.10", "fd00:10:96::a"},
			ExcludeNamespaces:           []string{"kube-system", "openshift-dns"},
		},
		CNIBinDir:                 "/host/var/lib/cni/bin",
		CNIConfDir:                "/host/etc/kubernetes/cni/net.d",
		HostCNIConfDir:            "/etc/kubernetes/cni/net.d",
		StateDir:                  "/run/authbridge",
		CredentialDir:             "/var/lib/authbridge-node",
		ProbeInterval:             Duration{90 * time.Second},
		VerifyInterval:            Duration{15 * time.Second},
		RemovedKeepEntryOnUpgrade: &yes,
		RepairPods:                true,
		MetricsAddr:               "127.0.0.1:9861",
		LogLevel:                  "debug",
		CNIInstallMode:            InstallMultusAttachment,
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("ParseAgent:\n got %+v\nwant %+v", a, want)
	}
	// The removed key is accepted (an old ConfigMap must not stop a
	// rollout) and reported as ignored, naming itself.
	if d := a.Deprecations(); len(d) != 1 || !strings.HasPrefix(d[0], "keepEntryOnUpgrade is removed and ignored") {
		t.Fatalf("Deprecations() = %q", d)
	}
	// JSON is YAML too: the plugin's conflist entry carries the same keys.
	j, err := ParseAgent([]byte(`{"defaultMode":"enforce-redirect","outboundPort":9000,"probeInterval":"1m"}`))
	if err != nil {
		t.Fatalf("ParseAgent(JSON): %v", err)
	}
	if j.OutboundPort != 9000 || j.ProbeInterval.Duration != time.Minute {
		t.Fatalf("ParseAgent(JSON) = %+v", j)
	}
	// The rule model built from the policy carries the knobs.
	s := a.RedirectSpec(redirect.IPv4, redirect.IPv6)
	if s.ProxyUID != 1500 || s.OutboundPort != 15001 || !s.InboundEnabled || s.InboundPort != 15006 ||
		len(s.ExcludeOutboundCIDRs) != 2 || len(s.ExcludeOutboundPorts) != 1 || len(s.ExcludeInboundPorts) != 2 {
		t.Fatalf("RedirectSpec = %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("RedirectSpec().Validate: %v", err)
	}
}

// Non-zero explicit values of the zero-refused keys are taken as written,
// and the new list round-trips.
func TestParseAgentExplicitNonZero(t *testing.T) {
	a, err := ParseAgent([]byte("proxyUID: 1\noutboundPort: 1\ninboundPort: 2\nmark: 1\nmarkMask: 1\nprobeInterval: 10s\nallowedPodNameservers: [192.0.2.53/32]\nclusterDNS: [\"fd00::a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.ProxyUID != 1 || a.OutboundPort != 1 || a.InboundPort != 2 || a.Mark != 1 || a.MarkMask != 1 || a.ProbeInterval.Duration != 10*time.Second ||
		!reflect.DeepEqual(a.AllowedPodNameservers, []string{"192.0.2.53/32"}) {
		t.Fatalf("explicit values not kept: %+v", a)
	}
}

func TestParseAgentRefusesUnknownKeys(t *testing.T) {
	for _, key := range []string{"allowCooprative", "defaultmode", "acknowledgeCooperativeRisk", "backend", "excludeOutboundCIDR"} {
		_, err := ParseAgent([]byte(key + ": true\n"))
		if err == nil {
			t.Errorf("ParseAgent(%s: true) accepted an unknown key", key)
			continue
		}
		if !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("ParseAgent(%s: true) error does not name the key: %v", key, err)
		}
	}
}

func TestParseAgentBadValuesNameTheField(t *testing.T) {
	cases := []struct {
		in    string
		field string // must appear in the error
		also  string // and this, when set (the value or the fix)
	}{
		{"defaultMode: strict", "defaultMode", `"strict"`},
		{"defaultMode: 5", "defaultMode", ""},
		{"defaultMode: ENFORCE-REDIRECT", "defaultMode", "enforce-redirect"},
		{"allowCooperative: yes-please", "allowCooperative", ""},
		{"backends: [nftables, ebpf]", "backends", `"ebpf"`},
		{"backends: [nftables, nftables]", "backends", "twice"},
		{"backends: nftables", "backends", ""},
		{`sidecarContainerNames: [""]`, "sidecarContainerNames", "authbridge-proxy"},
		{"netfilterRuntimeHandlers: []", "netfilterRuntimeHandlers", "no pod could get rules"},
		{"netfilterRuntimeHandlers: [runc, Run_SC]", "netfilterRuntimeHandlers", `"Run_SC"`},
		{"proxyUID: -1", "proxyUID", ""},
		{"proxyUID: 4294967296", "proxyUID", ""},
		{"outboundPort: 70000", "outboundPort", ""},
		{"outboundPort: -1", "outboundPort", ""},
		{"inboundPort: 65536", "inboundPort", ""},
		{"inboundRedirect: true\nexcludeInboundPorts: [0]", "excludeInboundPorts", "1-65535"},
		{"excludeOutboundPorts: [0]", "excludeOutboundPorts", "1-65535"},
		{"excludeOutboundCIDRs: [10.0.0.0]", "excludeOutboundCIDRs", "10.0.0.0"},
		{"excludeOutboundCIDRs: [10.0.0.0/33]", "excludeOutboundCIDRs", ""},
		{"clusterDNS: [kube-dns]", "clusterDNS", "kube-dns"},
		{"mark: 0x1000", "mark", "markMask"},
		{"markMask: 0xf0\nmark: 0x539", "mark", "0x539"},
		{"probeInterval: 1s", "probeInterval", "10s"},
		{"probeInterval: -5m", "probeInterval", ""},
		{"probeInterval: soon", "probeInterval", `"soon"`},
		{"probeInterval: 300", "probeInterval", `"5m"`},
		{"verifyInterval: 4s", "field verifyInterval", "at least 5s"},
		{"verifyInterval: -1s", "field verifyInterval", "at least 5s"},
		{"verifyInterval: 0s", "field verifyInterval", "never check"},
		{"verifyInterval: null", "verifyInterval", ""},
		{"verifyInterval: often", "verifyInterval", `"often"`},
		{"logLevel: verbose", "logLevel", "debug, info, warn, error"},
		{"cniInstallMode: multus", "field cniInstallMode", "multus-attachment"},
		{"cniInstallMode: Chain", "field cniInstallMode", "chain"},
		{"cniBinDir: opt/cni/bin", "cniBinDir", "absolute"},
		{"cniConfDir: net.d", "cniConfDir", "absolute"},
		{"hostCNIConfDir: etc/cni", "hostCNIConfDir", "absolute"},
		{"stateDir: run", "stateDir", "absolute"},
		{"keepEntryOnUpgrade: 1", "keepEntryOnUpgrade", ""},
		{"repairPods: [true]", "repairPods", ""},
		// Explicit zeros are refused, not replaced by the default.
		{"proxyUID: 0", "field proxyUID", "1337"},
		{"proxyUID: null", "field proxyUID", "remove the key"},
		{"outboundPort: 0", "field outboundPort", "8082"},
		{"inboundPort: 0", "field inboundPort", "8083"},
		{"mark: 0", "field mark", "0x539"},
		{"markMask: 0", "field markMask", "0xfff"},
		{"probeInterval: 0s", "field probeInterval", "at least 10s"},
		{"probeInterval: \"0\"", "field probeInterval", "remove the key"},
		{`{"proxyUID":0}`, "field proxyUID", "root"},
		// Zones and catch-all exclusions.
		{"clusterDNS: [\"fe80::1%eth0\"]", "field clusterDNS", "zone"},
		{"excludeOutboundCIDRs: [0.0.0.0/0]", "field excludeOutboundCIDRs", "use allowCooperative/auto instead"},
		{"excludeOutboundCIDRs: [\"10.0.0.0/8\", \"::/0\"]", "field excludeOutboundCIDRs", "turn enforcement off for every pod"},
		{"excludeOutboundCIDRs: [0.0.0.0/1, 128.0.0.0/1]", "field excludeOutboundCIDRs", "together cover every ipv4 destination"},
		{"excludeOutboundCIDRs: [\"::/1\", \"8000::/2\", \"c000::/2\"]", "field excludeOutboundCIDRs", "together cover every ipv6 destination"},
		{"allowedPodNameservers: [8.8.8.8]", "field allowedPodNameservers", "8.8.8.8"},
		{"allowedPodNameservers: [0.0.0.0/0]", "field allowedPodNameservers", "every address"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := ParseAgent([]byte(c.in))
			if err == nil {
				t.Fatalf("ParseAgent(%q) accepted a bad value", c.in)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error does not name field %s: %v", c.field, err)
			}
			if c.also != "" && !strings.Contains(err.Error(), c.also) {
				t.Errorf("error does not contain %q: %v", c.also, err)
			}
		})
	}
}

// The three acknowledgement cases the security model depends on (issue 6).
func TestCooperativeNeedsCurrentAcknowledgement(t *testing.T) {
	if SecurityModelVersion != "security-model-v2" || SecurityModelDoc != "docs/security-model.md" {
		t.Fatalf("the docs quote %q and %q; update docs/security-model.md and this test together", SecurityModelVersion, SecurityModelDoc)
	}
	cases := []struct {
		name    string
		in      string
		wantErr []string // substrings; nil means accepted
	}{
		{
			name:    "missing acknowledgement",
			in:      "allowCooperative: true\n",
			wantErr: []string{"docs/security-model.md", "acknowledgeCooperativeRisks", `"security-model-v2"`, "allowCooperative"},
		},
		{
			name:    "empty acknowledgement",
			in:      "allowCooperative: true\nacknowledgeCooperativeRisks: \"\"\n",
			wantErr: []string{"docs/security-model.md", "acknowledgeCooperativeRisks", `"security-model-v2"`},
		},
		{
			name:    "stale acknowledgement",
			in:      "allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n",
			wantErr: []string{"docs/security-model.md", "acknowledgeCooperativeRisks", `"security-model-v0"`, "stale", `"security-model-v2"`},
		},
		{
			name:    "previous version's acknowledgement after the upgrade",
			in:      "allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v1\n",
			wantErr: []string{"docs/security-model.md", "acknowledgeCooperativeRisks", `"security-model-v1"`, "older", `Changes from security-model-v1`, `"security-model-v2"`},
		},
		{
			name:    "wrong acknowledgement",
			in:      "allowCooperative: true\nacknowledgeCooperativeRisks: \"yes\"\n",
			wantErr: []string{"docs/security-model.md", "acknowledgeCooperativeRisks", `"yes"`},
		},
		{
			name:    "acknowledgement with stray whitespace is not the version",
			in:      "allowCooperative: true\nacknowledgeCooperativeRisks: \"security-model-v2 \"\n",
			wantErr: []string{"acknowledgeCooperativeRisks"},
		},
		{
			name: "current acknowledgement",
			in:   "allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2\n",
		},
		{
			name: "current acknowledgement with defaultMode none",
			in:   "defaultMode: none\nallowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2\n",
		},
		{
			name:    "defaultMode none without allowCooperative",
			in:      "defaultMode: none\n",
			wantErr: []string{"defaultMode", "allowCooperative: true", "docs/security-model.md", "security-model-v2"},
		},
		{
			name:    "defaultMode none with an acknowledgement but no allowCooperative",
			in:      "defaultMode: none\nacknowledgeCooperativeRisks: security-model-v2\n",
			wantErr: []string{"defaultMode", "allowCooperative: true"},
		},
		{
			name:    "defaultMode none, allowCooperative, stale acknowledgement",
			in:      "defaultMode: none\nallowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n",
			wantErr: []string{"acknowledgeCooperativeRisks", "security-model-v0"},
		},
		{
			// auto without allowCooperative is allowed: it enforces where the
			// node can, and fails the pod (closed) where it cannot.
			name: "defaultMode auto without allowCooperative",
			in:   "defaultMode: auto\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := ParseAgent([]byte(c.in))
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseAgent refused a valid opt-in: %v", err)
				}
				if a.AllowCooperative && a.AcknowledgeCooperativeRisks != SecurityModelVersion {
					t.Fatalf("accepted allowCooperative with acknowledgement %q", a.AcknowledgeCooperativeRisks)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAgent accepted %q", c.in)
			}
			for _, s := range c.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q: %v", s, err)
				}
			}
		})
	}
}

// The messages quoted verbatim in docs/security-model.md.
func TestAcknowledgementMessagesQuotedInDocs(t *testing.T) {
	want := map[string]string{
		"allowCooperative: true\n": `agent config: field allowCooperative: cooperative mode is weaker than enforce-redirect; read docs/security-model.md and set acknowledgeCooperativeRisks: "security-model-v2" to allow it`,
		"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n": `agent config: field acknowledgeCooperativeRisks: "security-model-v0" is stale or wrong; read the current docs/security-model.md and set acknowledgeCooperativeRisks: "security-model-v2"`,
		"defaultMode: none\n": `agent config: field defaultMode: "none" needs allowCooperative: true (with acknowledgeCooperativeRisks: "security-model-v2"); see docs/security-model.md`,
		"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v1\n": `agent config: field acknowledgeCooperativeRisks: "security-model-v1" acknowledges an older docs/security-model.md; read what changed (section "Changes from security-model-v1") and set acknowledgeCooperativeRisks: "security-model-v2"`,
	}
	for in, msg := range want {
		_, err := ParseAgent([]byte(in))
		if err == nil || err.Error() != msg {
			t.Errorf("ParseAgent(%q)\n got %v\nwant %s", in, err, msg)
		}
	}
}

func TestWeakenings(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"defaultMode: enforce-redirect\ninboundRedirect: true\nkeepEntryOnUpgrade: true", nil},
		{"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2", []string{"allowCooperative"}},
		{"defaultMode: auto", []string{"defaultMode=auto"}},
		{"defaultMode: none\nallowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2", []string{"allowCooperative", "defaultMode=none"}},
		{"excludeOutboundCIDRs: [169.254.169.254/32]", []string{"excludeOutboundCIDRs"}},
		{"excludeOutboundPorts: [5432]", []string{"excludeOutboundPorts"}},
		{"allowedPodNameservers: [8.8.8.8/32, \"2001:4860:4860::8888/128\"]", []string{"allowedPodNameservers"}},
		{"markBypass: true", []string{"markBypass"}},
		{
			"defaultMode: auto\nallowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2\nexcludeOutboundCIDRs: [10.0.0.0/8]\nexcludeOutboundPorts: [22]",
			[]string{"allowCooperative", "defaultMode=auto", "excludeOutboundCIDRs", "excludeOutboundPorts"},
		},
	}
	for _, c := range cases {
		a, err := ParseAgent([]byte(c.in))
		if err != nil {
			t.Fatalf("ParseAgent(%q): %v", c.in, err)
		}
		if got := a.Weakenings(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Weakenings(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []string{"enforce-redirect", "auto", "none"} {
		got, err := ParseMode(m)
		if err != nil || string(got) != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	for _, bad := range []string{"", "cooperative", "Enforce-Redirect", "enforce", " none", "none\n", "redirect"} {
		_, err := ParseMode(bad)
		if err == nil {
			t.Errorf("ParseMode(%q) accepted", bad)
			continue
		}
		for _, want := range []string{`"enforce-redirect"`, `"auto"`, `"none"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseMode(%q) error lacks allowed value %s: %v", bad, want, err)
			}
		}
		if bad != "" && !strings.Contains(err.Error(), bad) && !strings.Contains(err.Error(), strings.TrimSpace(bad)) {
			t.Errorf("ParseMode(%q) error does not name the value: %v", bad, err)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	a, err := ParseAgent([]byte("probeInterval: 2m30s"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "probeInterval: 2m30s") {
		t.Fatalf("marshalled config lacks probeInterval: 2m30s:\n%s", out)
	}
	// A bad duration must be a *json.UnmarshalTypeError: only that type gets
	// the field's name added by encoding/json.
	var d Duration
	err = d.UnmarshalJSON([]byte(`"ten minutes"`))
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		t.Fatalf("Duration error is %T (%v), want *json.UnmarshalTypeError", err, err)
	}
}

// FuzzParseAgent: no input panics, and whatever is accepted satisfies the
// invariants the plugin and agent rely on and survives a round trip.
func FuzzParseAgent(f *testing.F) {
	seeds := []string{
		"",
		"{}",
		"defaultMode: auto\n",
		"defaultMode: none\nallowCooperative: true\nacknowledgeCooperativeRisks: security-model-v2\n",
		"allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n",
		"backends: [iptables-legacy]\nproxyUID: 1500\noutboundPort: 15001\n",
		"excludeOutboundCIDRs: [10.0.0.0/8, \"fd00::/8\"]\nexcludeOutboundPorts: [22]\n",
		"inboundRedirect: true\ninboundPort: 8083\nexcludeInboundPorts: [15021]\n",
		"mark: 0x539\nmarkMask: 0xfff\nclusterDNS: [10.96.0.10]\n",
		"probeInterval: 10s\nlogLevel: debug\nmetricsAddr: :9860\n",
		`{"cniBinDir":"/host/opt/cni/bin","stateDir":"/var/run/authbridge"}`,
		"- a\n- b\n",
		"probeInterval: 9999999999999h\n",
		"!!binary AAAA",
		"a: &x [*x]",
		"proxyUID: 0\n",
		"mark: 0\nmarkMask: 0\n",
		"probeInterval: 0s\n",
		"allowedPodNameservers: [10.96.0.0/12]\nclusterDNS: [\"fe80::1%eth0\"]\n",
		"excludeOutboundCIDRs: [::/0]\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAgent(data)
		if err != nil {
			return
		}
		if _, err := ParseMode(string(a.DefaultMode)); err != nil {
			t.Fatalf("accepted defaultMode %q", a.DefaultMode)
		}
		if a.AllowCooperative && a.AcknowledgeCooperativeRisks != SecurityModelVersion {
			t.Fatalf("accepted allowCooperative with acknowledgement %q", a.AcknowledgeCooperativeRisks)
		}
		if a.DefaultMode == ModeNone && !a.AllowCooperative {
			t.Fatal("accepted defaultMode none without allowCooperative")
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		for _, c := range a.ExcludeOutboundCIDRs {
			if strings.HasSuffix(c, "/0") {
				t.Fatalf("accepted excludeOutboundCIDRs %q", c)
			}
		}
		if err := a.RedirectSpec(redirect.IPv4, redirect.IPv6).Validate(); err != nil {
			t.Fatalf("accepted config renders an invalid rule model: %v", err)
		}
		out, err := yaml.Marshal(a)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		b, err := ParseAgent(out)
		if err != nil {
			t.Fatalf("re-parse of accepted config failed: %v\n%s", err, out)
		}
		// Compare the renderings: nil and empty lists mean the same.
		out2, err := yaml.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the config:\n%s\n%s", out, out2)
		}
	})
}

// The error messages send admins to "the configuration table in README.md":
// that table (and the one in docs/operations.md) must list every key the
// parser accepts, and nothing it refuses.
func TestConfigTablesListEveryKey(t *testing.T) {
	known := map[string]bool{}
	JSONKeys(reflect.TypeFor[Agent](), known)
	for _, doc := range []struct{ file, section string }{{"../../README.md", "## Configuration"}, {"../../docs/operations.md", "| Key | Default | Meaning |"}} {
		b, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(string(b), doc.section)
		if !ok {
			t.Fatalf("%s has no %q", doc.file, doc.section)
		}
		listed := map[string]bool{}
		inTable := false
		for _, ln := range strings.Split(after, "\n") {
			if !strings.HasPrefix(ln, "|") {
				if inTable {
					break // the first table after the heading only
				}
				continue
			}
			inTable = true
			first := strings.Split(ln, "|")[1]
			for _, m := range regexp.MustCompile("`([A-Za-z]+)`").FindAllStringSubmatch(first, -1) {
				listed[m[1]] = true
			}
		}
		for k := range known {
			if !listed[k] {
				t.Errorf("%s: the configuration table lacks key %q", doc.file, k)
			}
		}
		for k := range listed {
			if !known[k] {
				t.Errorf("%s: the configuration table lists %q, which the parser refuses", doc.file, k)
			}
		}
	}
}
