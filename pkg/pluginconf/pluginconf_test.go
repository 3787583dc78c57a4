package pluginconf_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kagenti/authbridge-node/internal/cni"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// TestEntryIsWhatThePluginParses: the entry the agent writes, with the keys
// the runtime adds, passes the plugin's strict parser (no unknown key, no
// case mismatch) and comes back field for field.
func TestEntryIsWhatThePluginParses(t *testing.T) {
	f := pluginconf.Fields{
		Kubeconfig: "/etc/cni/net.d/authbridge-cni.kubeconfig",
		LogFile:    "/var/log/x.log",
		StateDir:   "/run/ab",
		Policy: config.Policy{AllowCooperative: true, AcknowledgeCooperativeRisks: config.SecurityModelVersion,
			Backends: []string{redirect.BackendIPTablesNFT}, ExcludeOutboundCIDRs: []string{"10.0.0.0/8"}, ClusterDNS: []string{"10.96.0.10"}},
	}
	f.Policy = f.Policy.WithDefaults() // what the plugin's parser fills in
	b, err := json.Marshal(pluginconf.New(f))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != pluginconf.PluginType {
		t.Fatalf("type %v, want %s", m["type"], pluginconf.PluginType)
	}
	m["cniVersion"], m["name"] = "1.1.0", "k8s-pod-network"
	stdin, _ := json.Marshal(m)
	c, err := cni.ParseConfig(stdin)
	if err != nil {
		t.Fatalf("the plugin refuses the agent's entry %s: %v", b, err)
	}
	if !reflect.DeepEqual(c.Fields, f) {
		t.Errorf("round trip:\n got %+v\nwant %+v", c.Fields, f)
	}
}
