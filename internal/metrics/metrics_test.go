package metrics

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// Metrics are served by promhttp from a private registry and scraped over
// real HTTP; values are checked by name and labels.
func TestMetricsScrapedOverHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	m.ObserveProbe([]nodestate.BackendResult{
		{Backend: "nftables", Works: false, Duration: 20 * time.Millisecond, Error: "x"},
		{Backend: "iptables-nft", Works: true, Duration: 30 * time.Millisecond},
	})
	for _, ev := range []pluginevents.Event{
		{Op: "ADD", Result: "success", Mode: "enforce-redirect", Seconds: 0.01},
		{Op: "ADD", Result: "success", Mode: "cooperative", Reason: "annotation", Seconds: 0.02},
		{Op: "ADD", Result: "success", Mode: "cooperative", Reason: "vm-runtime-class", Seconds: 0.02},
		{Op: "ADD", Result: "failure", Mode: "enforce-redirect", Seconds: 0.5},
		{Op: "DEL", Result: "success"},
		{Op: "BOGUS", Result: "weird", Mode: "x"},
	} {
		m.ObservePluginEvent(ev)
	}
	m.SetWeakenings([]string{"allowCooperative"})
	m.ConflistReinsertions.Inc()
	m.TokenRefreshes.Add(2)
	m.AgentReady.Set(1)

	s, err := Scrape(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		Key("authbridge_probe_backend_works", map[string]string{"backend": "nftables"}):             0,
		Key("authbridge_probe_backend_works", map[string]string{"backend": "iptables-nft"}):         1,
		Key("authbridge_probe_duration_seconds_count", map[string]string{"backend": "nftables"}):    1,
		"authbridge_egress_redirect_capable":                                                        1,
		Key("authbridge_cni_operations_total", map[string]string{"op": "ADD", "result": "success"}): 3,
		Key("authbridge_cni_operations_total", map[string]string{"op": "ADD", "result": "failure"}): 1,
		Key("authbridge_cni_operations_total", map[string]string{"op": "DEL", "result": "success"}): 1,
		Key("authbridge_cni_operations_total", map[string]string{"op": "other", "result": "other"}): 1,
		"authbridge_cni_add_duration_seconds_count":                                                 4,
		Key("authbridge_cni_pods_total", map[string]string{"mode": "enforce-redirect"}):             1,
		Key("authbridge_cni_pods_total", map[string]string{"mode": "cooperative"}):                  2,
		Key("authbridge_cooperative_pods_total", map[string]string{"reason": "annotation"}):         1,
		Key("authbridge_cooperative_pods_total", map[string]string{"reason": "vm-runtime-class"}):   1,
		Key("authbridge_config_weakenings", map[string]string{"setting": "allowCooperative"}):       1,
		"authbridge_conflist_reinsertions_total":                                                    1,
		"authbridge_token_refreshes_total":                                                          2,
		"authbridge_agent_ready":                                                                    1,
		"authbridge_pods_without_rules":                                                             0,
		"authbridge_hostnetwork_pods":                                                               0,
	}
	for k, v := range want {
		got, ok := s[k]
		if !ok {
			t.Errorf("%s missing from scrape", k)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if sum := s["authbridge_cni_add_duration_seconds_sum"]; sum < 0.549 || sum > 0.551 {
		t.Errorf("add duration sum = %v, want 0.55", sum)
	}
	// Weakenings are replaced, not accumulated.
	m.SetWeakenings(nil)
	s, _ = Scrape(context.Background(), srv.URL)
	if _, ok := s.Get("authbridge_config_weakenings", map[string]string{"setting": "allowCooperative"}); ok {
		t.Error("weakening still reported after SetWeakenings(nil)")
	}
}

// authbridge_pods{mode} is a gauge: replaced on each update, every known
// mode exported (0 when absent), the plugin's "skip" shown as "skipped".
func TestPodsPerModeGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	get := func(mode string) float64 {
		t.Helper()
		s, err := Scrape(context.Background(), srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := s.Get("authbridge_pods", map[string]string{"mode": mode})
		if !ok {
			t.Fatalf("authbridge_pods{mode=%q} missing", mode)
		}
		return v
	}
	m.SetPodsPerMode(map[podmode.Mode]int{"enforce-redirect": 3, "skip": 2, "bogus": 1})
	if get("enforce-redirect") != 3 || get("skipped") != 2 || get("cooperative") != 0 || get("other") != 1 {
		t.Fatalf("first update: enforce %v skipped %v cooperative %v other %v", get("enforce-redirect"), get("skipped"), get("cooperative"), get("other"))
	}
	m.SetPodsPerMode(map[podmode.Mode]int{"cooperative": 1})
	if get("enforce-redirect") != 0 || get("cooperative") != 1 {
		t.Fatalf("second update not replacing: enforce %v cooperative %v", get("enforce-redirect"), get("cooperative"))
	}
}
