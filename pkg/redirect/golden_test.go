package redirect_test

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata from the current rendering")

// goldenSpecs are the rule sets kept as text under testdata: a change to
// the rules shows up in review as a diff of these files.
func goldenSpecs() map[string]redirect.Spec {
	def := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
	full := def
	full.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.99.0.3/32"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd99::3/128"), netip.MustParsePrefix("fd00:1::/48")}
	full.ExcludeOutboundPorts = []uint16{9091, 443}
	full.InboundEnabled = true
	full.ExcludeInboundPorts = []uint16{22}
	full.OnLinkIPv6 = []netip.Prefix{netip.MustParsePrefix("fd99::/64")}
	return map[string]redirect.Spec{"default": def, "full": full}
}

// goldenTexts renders each spec per backend: the nft text for nftables,
// the iptables-restore input per family for both iptables backends (they
// share it; only the binary differs).
func goldenTexts() map[string]string {
	out := map[string]string{}
	for name, s := range goldenSpecs() {
		out[name+".nft"] = redirect.NFTText(s)
		out[name+".ipv4.iptables-restore"] = redirect.RestoreInput(s, redirect.IPv4)
		out[name+".ipv6.iptables-restore"] = redirect.RestoreInput(s, redirect.IPv6)
	}
	return out
}

// TestGoldenRules compares the rendered rules with testdata; go test
// ./pkg/redirect -run TestGoldenRules -update rewrites them. Pure: no root.
func TestGoldenRules(t *testing.T) {
	for file, got := range goldenTexts() {
		path := filepath.Join("testdata", file)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v: regenerate with go test ./pkg/redirect -run TestGoldenRules -update", err)
		}
		if string(want) != got {
			t.Errorf("%s is stale: review the rule change, then regenerate with go test ./pkg/redirect -run TestGoldenRules -update\n--- %s\n%s\n--- rendered now\n%s", path, path, want, got)
		}
	}
}

// TestGoldenNFTMatchesKernel: the golden nft text is what the kernel
// reports after the netlink backend applied the spec (read with nft), so
// the files show the real rules, not a second opinion of them.
func TestGoldenNFTMatchesKernel(t *testing.T) {
	b, err := redirect.New(redirect.BackendNFTables)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range goldenSpecs() {
		t.Run(name, func(t *testing.T) {
			tp := redirecttest.NewTopology(t)
			if err := tp.Do(func() error { return b.Apply(s) }); err != nil {
				t.Fatal(err)
			}
			out, err := redirecttest.Output(tp.Pod, "nft", "list", "ruleset")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(out), strings.TrimSpace(redirect.NFTText(s)); got != want {
				t.Errorf("nft list ruleset after Apply:\n%s\n--- the rendering (testdata/%s.nft):\n%s", got, name, want)
			}
		})
	}
}
