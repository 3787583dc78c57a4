package agent

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/pkg/config"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Bad configs are refused with the field named; the cooperative
// acknowledgement is enforced (missing, stale, correct).
func TestLoadConfigRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "defaultMod: enforce-redirect\n", []string{`unknown field "defaultMod"`}},
		{"bad mode", "defaultMode: sometimes\n", []string{"field defaultMode", `"sometimes"`}},
		{"bad backend", "backends: [nftables, ebpf]\n", []string{"field backends", `"ebpf"`}},
		{"bad duration", "probeInterval: soon\n", []string{"probeInterval"}},
		{"cooperative without ack", "allowCooperative: true\n", []string{"field allowCooperative", config.SecurityModelDoc, "acknowledgeCooperativeRisks", config.SecurityModelVersion}},
		{"stale ack", "allowCooperative: true\nacknowledgeCooperativeRisks: security-model-v0\n", []string{"field acknowledgeCooperativeRisks", "stale", config.SecurityModelDoc, config.SecurityModelVersion}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := LoadConfig(p, false)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing config file: %v", err)
	}
	if cfg, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), true); err != nil || cfg.DefaultMode != config.ModeEnforceRedirect {
		t.Errorf("missing config with allowMissing: %v", err)
	}
}

// A correct acknowledgement is accepted; the weakening is logged at WARN
// and exported as authbridge_config_weakenings{setting} = 1 (scraped).
func TestCooperativeAcknowledgedIsWarnedAndCounted(t *testing.T) {
	p := writeConfig(t, "allowCooperative: true\nacknowledgeCooperativeRisks: "+config.SecurityModelVersion+"\nexcludeOutboundPorts: [25]\n")
	cfg, err := LoadConfig(p, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	h := newAgent(t, admin(t), "node-config", cfg, nil)
	createNode(t, admin(t), "node-config")
	h.start(t)
	logs := h.logs.String()
	for _, s := range []string{"allowCooperative", "excludeOutboundPorts"} {
		if !strings.Contains(logs, `"level":"WARN","msg":"configuration weakens egress enforcement","node":"node-config","setting":"`+s+`"`) {
			t.Errorf("no WARN for %s in %s", s, logs)
		}
		if v, ok := h.scrape(t).Get("authbridge_config_weakenings", map[string]string{"setting": s}); !ok || v != 1 {
			t.Errorf("config_weakenings{%s} = %v (present %v)", s, v, ok)
		}
	}
	if _, ok := h.scrape(t).Get("authbridge_config_weakenings", map[string]string{"setting": "excludeOutboundCIDRs"}); ok {
		t.Error("weakening reported for a setting that is not used")
	}
	_ = metrics.Key
}

// The e2e probe knob works in production builds, so when it is set the
// agent says so at WARN and exports it as a weakening; unset, nothing.
func TestProbeForceFailKnobIsAWeakening(t *testing.T) {
	for _, val := range []string{"nftables", ""} {
		cfg := testConfig(t)
		h := newAgent(t, admin(t), "node-forcefail", cfg, func(o *Options) {
			o.Getenv = func(k string) string {
				if k == "AUTHBRIDGE_PROBE_FORCE_FAIL" {
					return val
				}
				return ""
			}
		})
		srv := httptest.NewServer(h.a.Handler())
		s, err := metrics.Scrape(context.Background(), srv.URL+"/metrics")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		v, ok := s.Get("authbridge_config_weakenings", map[string]string{"setting": "AUTHBRIDGE_PROBE_FORCE_FAIL"})
		warned := strings.Contains(h.logs.String(), `"level":"WARN","msg":"test knob set`) && strings.Contains(h.logs.String(), `"env":"AUTHBRIDGE_PROBE_FORCE_FAIL","value":"nftables"`)
		if val != "" && (!ok || v != 1 || !warned) {
			t.Errorf("knob %q: weakening %v (present %v), warned %v: %s", val, v, ok, warned, h.logs.String())
		}
		if val == "" && (ok || warned) {
			t.Errorf("knob unset but reported: weakening present %v, warned %v", ok, warned)
		}
	}
}
