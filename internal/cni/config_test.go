package cni

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"authbridge-cni","kubeconfig":"/etc/cni/net.d/authbridge-kubeconfig"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.LogFile != pluginconf.DefaultLogFile || c.StateDir != pluginconf.DefaultStateDir {
		t.Fatalf("defaults: logFile %q stateDir %q", c.LogFile, c.StateDir)
	}
	if c.DefaultMode != config.ModeEnforceRedirect || !reflect.DeepEqual(c.Backends, redirect.AllBackends) ||
		c.ProxyUID != redirect.DefaultProxyUID || c.OutboundPort != redirect.DefaultOutboundPort ||
		!reflect.DeepEqual(c.SidecarContainerNames, []string{config.DefaultSidecarContainerName}) {
		t.Fatalf("policy defaults not applied: %+v", c.Policy)
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := `"cniVersion":"1.1.0","name":"n","type":"authbridge-cni"`
	tests := []struct {
		in   string
		code uint
		want []string
	}{
		{`{` + base, types.ErrDecodingFailure, []string{"malformed JSON"}},
		{`[]`, types.ErrDecodingFailure, []string{"(top level)"}},
		{`{` + base + `,"bakends":["nftables"]}`, types.ErrInvalidNetworkConfig, []string{`unknown field "bakends"`, "README.md"}},
		{`{` + base + `,"proxyUID":"1337"}`, types.ErrDecodingFailure, []string{"field proxyUID", "got a JSON string", "whole number from 0 to 4294967295"}},
		{`{` + base + `,"outboundPort":70000}`, types.ErrDecodingFailure, []string{"field outboundPort", "0 to 65535"}},
		{`{` + base + `,"backends":["ebpf"]}`, types.ErrInvalidNetworkConfig, []string{"field backends", `"ebpf"`}},
		{`{` + base + `,"allowCooperative":true}`, types.ErrInvalidNetworkConfig, []string{"field allowCooperative", "acknowledgeCooperativeRisks", config.SecurityModelVersion}},
		{`{` + base + `,"allowCooperative":true,"acknowledgeCooperativeRisks":"security-model-v0"}`, types.ErrInvalidNetworkConfig, []string{"stale or wrong"}},
		{`{` + base + `,"defaultMode":"off"}`, types.ErrInvalidNetworkConfig, []string{"field defaultMode", `"off"`}},
		{`{` + base + `,"defaultMode":"none"}`, types.ErrInvalidNetworkConfig, []string{"allowCooperative"}},
		{`{` + base + `,"logFile":"relative.log"}`, types.ErrInvalidNetworkConfig, []string{"field logFile", "absolute"}},
		{`{` + base + `,"stateDir":"run"}`, types.ErrInvalidNetworkConfig, []string{"field stateDir"}},
		{`{` + base + `,"kubeconfig":"kc"}`, types.ErrInvalidNetworkConfig, []string{"field kubeconfig"}},
		{`{` + base + `,"excludeOutboundCIDRs":["10.0.0.0"]}`, types.ErrInvalidNetworkConfig, []string{"field excludeOutboundCIDRs"}},
		{`{"cniVersion":"1.1.0","name":"n","type":"bridge"}`, types.ErrInvalidNetworkConfig, []string{"field type", `"authbridge-cni"`}},
		{`{` + base + `} {}`, types.ErrDecodingFailure, []string{"trailing data"}},
		// CNI requires a network name; null is not a config.
		{`null`, types.ErrDecodingFailure, []string{"null", "one JSON object"}},
		{` null `, types.ErrDecodingFailure, []string{"null"}},
		{`{"cniVersion":"1.1.0","type":"authbridge-cni"}`, types.ErrInvalidNetworkConfig, []string{"field name", "not set"}},
		{`{"cniVersion":"1.1.0","name":"","type":"authbridge-cni"}`, types.ErrInvalidNetworkConfig, []string{"field name"}},
		// Explicit zeros are refused, not replaced by the defaults.
		{`{` + base + `,"proxyUID":0}`, types.ErrInvalidNetworkConfig, []string{"field proxyUID", "root", "remove the key"}},
		{`{` + base + `,"proxyUID":null}`, types.ErrInvalidNetworkConfig, []string{"field proxyUID"}},
		{`{` + base + `,"outboundPort":0}`, types.ErrInvalidNetworkConfig, []string{"field outboundPort", "8082"}},
		{`{` + base + `,"inboundPort":0}`, types.ErrInvalidNetworkConfig, []string{"field inboundPort", "8083"}},
		{`{` + base + `,"mark":0}`, types.ErrInvalidNetworkConfig, []string{"field mark", "0x539"}},
		{`{` + base + `,"markMask":0}`, types.ErrInvalidNetworkConfig, []string{"field markMask", "0xfff"}},
		{`{` + base + `,"clusterDNS":["fe80::1%eth0"]}`, types.ErrInvalidNetworkConfig, []string{"field clusterDNS", "zone"}},
		{`{` + base + `,"excludeOutboundCIDRs":["0.0.0.0/0"]}`, types.ErrInvalidNetworkConfig, []string{"field excludeOutboundCIDRs", "turn enforcement off for every pod", "allowCooperative/auto"}},
		{`{` + base + `,"excludeOutboundCIDRs":["::/0"]}`, types.ErrInvalidNetworkConfig, []string{"field excludeOutboundCIDRs", "::/0"}},
		{`{` + base + `,"allowedPodNameservers":["8.8.8.8"]}`, types.ErrInvalidNetworkConfig, []string{"field allowedPodNameservers"}},
		{`{` + base + `,"probeInterval":"5m"}`, types.ErrInvalidNetworkConfig, []string{`unknown field "probeInterval"`}},
	}
	for _, tc := range tests {
		_, err := ParseConfig([]byte(tc.in))
		te, ok := err.(*types.Error)
		if !ok {
			t.Errorf("%s: error %v (%T), want *types.Error", tc.in, err, err)
			continue
		}
		if te.Code != tc.code {
			t.Errorf("%s: code %d, want %d (%v)", tc.in, te.Code, tc.code, te)
		}
		full := te.Msg + " " + te.Details
		for _, w := range tc.want {
			if !strings.Contains(full, w) {
				t.Errorf("%s: error %q does not mention %q", tc.in, full, w)
			}
		}
	}
}

// TestParseConfigRuntimeKeys: keys a runtime injects are accepted.
func TestParseConfigRuntimeKeys(t *testing.T) {
	in := `{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni","runtimeConfig":{"x":1},"args":{"cni":{}},
		"capabilities":{"portMappings":true},"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]},
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}`
	c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ValidAttachments) != 1 || c.RawPrevResult == nil {
		t.Fatalf("runtime keys lost: %+v", c)
	}
}

// TestConfMarshalRoundTrip: what MarshalJSON writes parses back to the
// same config.
func TestConfMarshalRoundTrip(t *testing.T) {
	c := Conf{Fields: pluginconf.Fields{Kubeconfig: "/etc/cni/net.d/authbridge-kubeconfig", LogFile: "/var/log/x.log", StateDir: "/run/ab"}}
	c.CNIVersion, c.Name, c.Type = "1.1.0", "k8s", pluginconf.PluginType
	c.Policy = config.Policy{AllowCooperative: true, AcknowledgeCooperativeRisks: config.SecurityModelVersion,
		Backends: []string{redirect.BackendIPTablesNFT}, ExcludeOutboundCIDRs: []string{"10.0.0.0/8"}, ClusterDNS: []string{"10.96.0.10"}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"kubeconfig"`, `"allowCooperative":true`, `"backends":["iptables-nft"]`, `"type":"authbridge-cni"`} {
		if !strings.Contains(string(b), k) {
			t.Fatalf("marshalled entry %s lacks %s", b, k)
		}
	}
	if strings.Contains(string(b), `"dns"`) || strings.Contains(string(b), `"ipam"`) {
		t.Fatalf("marshalled entry has empty dns/ipam: %s", b)
	}
	back, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("parse marshalled entry: %v\n%s", err, b)
	}
	want := c
	want.Policy = c.Policy.WithDefaults()
	if !reflect.DeepEqual(back.Policy, want.Policy) || back.Kubeconfig != c.Kubeconfig || back.StateDir != c.StateDir {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, want)
	}
}

// TestParseConfigLenient: DEL/GC read only what teardown needs; anything the
// strict parse refuses is a warning, malformed input is still an error.
func TestParseConfigLenient(t *testing.T) {
	skew := `{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni","stateDir":"/run/ab","futureKey":{"x":1},"proxyUID":0,"backends":"nftables",
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`
	c, warn, err := ParseConfigLenient([]byte(skew))
	if err != nil {
		t.Fatalf("lenient parse of a skewed entry: %v", err)
	}
	if warn == nil || !strings.Contains(warn.Error(), "futureKey") {
		t.Fatalf("warning = %v; want the strict parse's refusal naming futureKey", warn)
	}
	if c.StateDir != "/run/ab" || c.LogFile != pluginconf.DefaultLogFile || len(c.ValidAttachments) != 1 || c.Name != "n" {
		t.Fatalf("teardown fields lost: %+v", c)
	}
	if _, err := ParseConfig([]byte(skew)); err == nil {
		t.Fatal("the strict parse accepted the skewed entry")
	}
	if _, warn, err := ParseConfigLenient([]byte(`{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni"}`)); err != nil || warn != nil {
		t.Fatalf("clean entry: warn %v, err %v", warn, err)
	}
	for _, bad := range []string{`{"name":`, `null`, ``, `[]`, `{"stateDir":"run"}`, `{"stateDir":5}`, `{"name":"n"} {}`} {
		if _, _, err := ParseConfigLenient([]byte(bad)); err == nil {
			t.Errorf("ParseConfigLenient(%q) accepted", bad)
		} else if _, ok := err.(*types.Error); !ok {
			t.Errorf("ParseConfigLenient(%q) error is %T, want *types.Error", bad, err)
		}
	}
}

func TestK8sArgs(t *testing.T) {
	a, err := ParseK8sArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=team;K8S_POD_NAME=agent;K8S_POD_UID=u;K8S_POD_INFRA_CONTAINER_ID=x;OTHER=y")
	if err != nil || !a.IsPod() || a.K8S_POD_NAMESPACE != "team" || a.K8S_POD_UID != "u" {
		t.Fatalf("%+v %v", a, err)
	}
	a, err = ParseK8sArgs("")
	if err != nil || a.IsPod() {
		t.Fatalf("empty args: %+v %v", a, err)
	}
	if _, err := ParseK8sArgs("garbage"); err == nil {
		t.Fatal("malformed CNI_ARGS accepted")
	}
}

// FuzzParseConfig: no input panics; whatever is accepted is complete and
// valid (defaults applied, policy valid, absolute paths).
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni"}`,
		`{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni","allowCooperative":true,"acknowledgeCooperativeRisks":"security-model-v2","defaultMode":"none"}`,
		`{"cniVersion":"0.4.0","name":"n","type":"authbridge-cni","backends":["iptables-legacy"],"proxyUID":1000,"outboundPort":15001}`,
		`{"name":"n","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"fd00::2/64"}]},"excludeOutboundCIDRs":["10.0.0.0/8"]}`,
		`{"name":"n","mark":4096,"markMask":4095}`,
		`{"name":"n","logFile":"/x","stateDir":"/y","kubeconfig":"/z","clusterDNS":["10.96.0.10"]}`,
		`{`, `null`, `[]`, `""`, `{"name":1}`, `{"unknown":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConfig(in)
		if err != nil {
			if _, ok := err.(*types.Error); !ok {
				t.Fatalf("error is %T, want *types.Error: %v", err, err)
			}
			return
		}
		if err := c.Policy.Validate(); err != nil {
			t.Fatalf("accepted an invalid policy: %v", err)
		}
		if c.Name == "" {
			t.Fatal("accepted a config without name")
		}
		if !filepath.IsAbs(c.LogFile) || !filepath.IsAbs(c.StateDir) {
			t.Fatalf("accepted relative paths: %q %q", c.LogFile, c.StateDir)
		}
		if err := c.Policy.RedirectSpec(redirect.IPv4, redirect.IPv6).Validate(); err != nil {
			t.Fatalf("accepted a config whose rules are invalid: %v", err)
		}
	})
}

func TestParseConfigKeysAreCaseSensitive(t *testing.T) {
	_, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni","allowcooperative":true}`))
	if err == nil || !strings.Contains(err.Error(), `unknown field "allowcooperative"`) {
		t.Fatalf("case-folded key accepted: %v", err)
	}
}
