package redirect_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func TestMain(m *testing.M) {
	redirecttest.HelperMain()
	os.Exit(m.Run())
}

const (
	peerTCPPort = 9090
	nonDNSPort  = 5353
	otherUID    = 1000
)

var familySets = map[string][]redirect.Family{
	"ipv4":       {redirect.IPv4},
	"ipv6":       {redirect.IPv6},
	"dual-stack": {redirect.IPv4, redirect.IPv6},
}

func testSpec(fams []redirect.Family) redirect.Spec {
	s := redirect.DefaultSpec(fams...)
	s.Resolvers = []netip.Addr{redirecttest.PeerV4, redirecttest.PeerV6}
	return s
}

func TestBackends(t *testing.T) {
	for _, name := range redirect.AllBackends {
		for _, fs := range []string{"ipv4", "ipv6", "dual-stack"} {
			t.Run(name+"/"+fs, func(t *testing.T) { testBackend(t, name, familySets[fs]) })
		}
	}
}

func testBackend(t *testing.T, name string, fams []redirect.Family) {
	b, err := redirect.New(name)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != name {
		t.Fatalf("Name() = %q, want %q", b.Name(), name)
	}
	tp := redirecttest.NewTopology(t)
	spec := testSpec(fams)
	do := func(f func() error) error { return tp.Do(f) }

	for i := 0; i < 2; i++ { // the second Apply must leave one copy
		if err := do(func() error { return b.Apply(spec) }); err != nil {
			t.Fatalf("apply #%d: %v", i+1, err)
		}
		if err := do(func() error { return b.Verify(spec) }); err != nil {
			t.Fatalf("verify after apply #%d: %v", i+1, err)
		}
	}
	assertRulesReadBack(t, tp.Pod, name, spec)

	tp.ServeRedirect(t, redirect.DefaultOutboundPort)
	tp.ServePeer(t, peerTCPPort, 53, nonDNSPort)
	for _, f := range fams {
		peer, alt := redirecttest.PeerV4, redirecttest.PeerAltV4
		if f == redirect.IPv6 {
			peer, alt = redirecttest.PeerV6, redirecttest.PeerAltV6
		}
		dst := netip.AddrPortFrom(alt, peerTCPPort)
		for _, uid := range []uint32{0, otherUID} {
			got, err := tp.Dial(uid, dst)
			if err != nil {
				t.Fatalf("%s: dial as uid %d: %v", f, uid, err)
			}
			if want := "redirected " + dst.String(); got != want {
				t.Errorf("%s: uid %d to %s: got %q, want %q", f, uid, dst, got, want)
			}
		}
		got, err := tp.Dial(redirect.DefaultProxyUID, dst)
		if err != nil {
			t.Fatalf("%s: dial as proxy uid: %v", f, err)
		}
		if want := "direct " + dst.String(); got != want {
			t.Errorf("%s: proxy uid to %s: got %q, want %q (must bypass the redirect)", f, dst, got, want)
		}
		// UDP: DNS to the resolver passes, everything else is dropped.
		if got, err := tp.SendUDP(otherUID, netip.AddrPortFrom(peer, 53)); err != nil || !strings.HasPrefix(got, "udp ") {
			t.Errorf("%s: DNS to resolver %s: got %q, %v; want an answer", f, peer, got, err)
		}
		for _, d := range []netip.AddrPort{netip.AddrPortFrom(alt, 53), netip.AddrPortFrom(peer, nonDNSPort)} {
			if got, err := tp.SendUDP(otherUID, d); err == nil {
				t.Errorf("%s: UDP to %s got answer %q; want it dropped", f, d, got)
			} else if !strings.Contains(err.Error(), "operation not permitted") {
				t.Errorf("%s: UDP to %s: %v; want EPERM from the netfilter DROP", f, d, err)
			}
		}
		if got, err := tp.SendUDP(redirect.DefaultProxyUID, netip.AddrPortFrom(peer, nonDNSPort)); err != nil {
			t.Errorf("%s: proxy UDP to %s: %v; want it to pass", f, peer, err)
		} else if !strings.HasPrefix(got, "udp ") {
			t.Errorf("%s: proxy UDP: got %q", f, got)
		}
	}

	// Tampering must be detected.
	tamper(t, tp.Pod, name, fams[0], "delete")
	if err := do(func() error { return b.Verify(spec) }); err == nil {
		t.Errorf("verify passed after a rule was deleted")
	} else {
		t.Logf("after delete: %v", err)
	}
	if err := do(func() error { return b.Apply(spec) }); err != nil {
		t.Fatal(err)
	}
	tamper(t, tp.Pod, name, fams[0], "add")
	if err := do(func() error { return b.Verify(spec) }); err == nil {
		t.Errorf("verify passed after an extra rule was added")
	} else {
		t.Logf("after add: %v", err)
	}
	if err := do(func() error { return b.Apply(spec) }); err != nil {
		t.Fatal(err)
	}
	tamper(t, tp.Pod, name, fams[0], "flush")
	if err := do(func() error { return b.Verify(spec) }); err == nil {
		t.Errorf("verify passed after a chain was flushed")
	}

	for i := 0; i < 2; i++ {
		if err := do(b.Remove); err != nil {
			t.Fatalf("remove #%d: %v", i+1, err)
		}
	}
	assertNothingLeft(t, tp.Pod)
	if err := do(func() error { return b.Verify(spec) }); err == nil {
		t.Errorf("verify passed after remove")
	}
	// After Remove, traffic goes direct again.
	if len(fams) > 0 {
		dst := netip.AddrPortFrom(redirecttest.PeerAltV4, peerTCPPort)
		if fams[0] == redirect.IPv6 {
			dst = netip.AddrPortFrom(redirecttest.PeerAltV6, peerTCPPort)
		}
		if got, err := tp.Dial(otherUID, dst); err != nil || got != "direct "+dst.String() {
			t.Errorf("after remove: got %q, %v; want direct", got, err)
		}
	}
}

// readBack returns the ruleset as the admin tools show it.
func readBack(t *testing.T, n ns.NetNS, backend string, f redirect.Family) string {
	t.Helper()
	var out string
	var err error
	switch backend {
	case redirect.BackendNFTables:
		out, err = redirecttest.Output(n, "nft", "list", "ruleset")
	default:
		bin := iptBin(backend, f) + "-save"
		out, err = redirecttest.Output(n, bin)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func iptBin(backend string, f redirect.Family) string {
	v := "iptables"
	if f == redirect.IPv6 {
		v = "ip6tables"
	}
	return v + strings.TrimPrefix(backend, "iptables")
}

func assertRulesReadBack(t *testing.T, n ns.NetNS, backend string, s redirect.Spec) {
	t.Helper()
	for _, f := range s.Families {
		out := readBack(t, n, backend, f)
		var want []string
		if backend == redirect.BackendNFTables {
			fam := map[redirect.Family]string{redirect.IPv4: "ip", redirect.IPv6: "ip6"}[f]
			want = []string{
				"table " + fam + " authbridge",
				"chain AB_REDIRECT", "type nat hook output priority -100; policy accept;",
				"chain AB_NOTCP", "type filter hook output priority filter; policy accept;",
				"ct state invalid drop",
				"meta skuid 1337 return",
				"meta l4proto tcp redirect to :8082",
				"meta skuid 1337 accept",
				"drop",
			}
		} else {
			want = []string{
				"-A OUTPUT -j AB_REDIRECT", "-A OUTPUT -j AB_NOTCP",
				"-A AB_NOTCP -m conntrack --ctstate INVALID -j DROP",
				"-m owner --uid-owner 1337 -j RETURN",
				"-p tcp -j REDIRECT --to-ports 8082",
				"-A AB_NOTCP -j DROP",
			}
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s %s read back lacks %q:\n%s", backend, f, w, out)
			}
		}
	}
}

func assertNothingLeft(t *testing.T, n ns.NetNS) {
	t.Helper()
	out, err := redirecttest.Output(n, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "authbridge") || strings.Contains(out, "AB_") {
		t.Errorf("nft ruleset still holds project rules after Remove:\n%s", out)
	}
	for _, bin := range []string{"iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save"} {
		out, err := redirecttest.Output(n, bin)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "AB_") {
			t.Errorf("%s still shows project chains after Remove:\n%s", bin, out)
		}
	}
}

// tamper changes the rules behind the backend's back with the admin tools.
func tamper(t *testing.T, n ns.NetNS, backend string, f redirect.Family, how string) {
	t.Helper()
	var err error
	if backend == redirect.BackendNFTables {
		fam := map[redirect.Family]string{redirect.IPv4: "ip", redirect.IPv6: "ip6"}[f]
		switch how {
		case "delete":
			var out string
			out, err = redirecttest.Output(n, "nft", "-a", "list", "chain", fam, "authbridge", "AB_REDIRECT")
			if err == nil {
				h := handleOf(t, out, "skuid")
				_, err = redirecttest.Output(n, "nft", "delete", "rule", fam, "authbridge", "AB_REDIRECT", "handle", h)
			}
		case "add":
			_, err = redirecttest.Output(n, "nft", "add", "rule", fam, "authbridge", "AB_REDIRECT", "tcp", "dport", "443", "return")
		case "flush":
			_, err = redirecttest.Output(n, "nft", "flush", "chain", fam, "authbridge", "AB_NOTCP")
		}
	} else {
		bin := iptBin(backend, f)
		switch how {
		case "delete":
			_, err = redirecttest.Output(n, bin, "-t", "nat", "-D", "AB_REDIRECT", "-m", "owner", "--uid-owner", "1337", "-j", "RETURN")
		case "add":
			_, err = redirecttest.Output(n, bin, "-t", "nat", "-A", "AB_REDIRECT", "-p", "tcp", "--dport", "443", "-j", "RETURN")
		case "flush":
			_, err = redirecttest.Output(n, bin, "-t", "filter", "-F", "AB_NOTCP")
		}
	}
	if err != nil {
		t.Fatalf("tamper %s: %v", how, err)
	}
}

func handleOf(t *testing.T, listing, substr string) string {
	t.Helper()
	for _, l := range strings.Split(listing, "\n") {
		if strings.Contains(l, substr) {
			if i := strings.Index(l, "# handle "); i >= 0 {
				return strings.TrimSpace(l[i+len("# handle "):])
			}
		}
	}
	t.Fatalf("no rule with %q in\n%s", substr, listing)
	return ""
}

func TestNewUnknownBackend(t *testing.T) {
	_, err := redirect.New("ebpf")
	if err == nil {
		t.Fatal("New accepted an unknown backend")
	}
	for _, n := range redirect.AllBackends {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name allowed value %q", err, n)
		}
	}
}

// TestBackendsFullSpec covers every optional field: excluded CIDRs and ports
// (rendered with prefix masks), inbound redirect, switching inbound off
// again, and a duplicated jump that Apply must fold back to one.
func TestBackendsFullSpec(t *testing.T) {
	for _, name := range redirect.AllBackends {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopology(t)
			full := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
			full.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.99.0.3/32"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd99::3/128"), netip.MustParsePrefix("fd00:1::/48")}
			full.ExcludeOutboundPorts = []uint16{9091, 443}
			full.InboundEnabled = true
			full.ExcludeInboundPorts = []uint16{22}
			do := tp.Do
			if err := do(func() error { return b.Apply(full) }); err != nil {
				t.Fatal(err)
			}
			if err := do(func() error { return b.Verify(full) }); err != nil {
				t.Fatal(err)
			}
			tp.ServeRedirect(t, redirect.DefaultOutboundPort)
			tp.ServePeer(t, peerTCPPort, nonDNSPort)
			tp.ServePeer(t, 9091)
			for _, c := range []struct {
				dst  string
				want string
			}{
				{"10.99.0.3:9090", "direct"},     // excluded CIDR
				{"[fd99::3]:9090", "direct"},     // excluded CIDR
				{"10.99.0.1:9091", "direct"},     // excluded port
				{"[fd99::1]:9091", "direct"},     // excluded port
				{"10.99.0.1:9090", "redirected"}, // everything else
				{"[fd99::1]:9090", "redirected"},
			} {
				dst := netip.MustParseAddrPort(c.dst)
				got, err := tp.Dial(otherUID, dst)
				if err != nil {
					t.Fatalf("dial %s: %v", dst, err)
				}
				if want := c.want + " " + dst.String(); got != want {
					t.Errorf("dial %s: got %q, want %q", dst, got, want)
				}
			}
			// Inbound: app ports go to the inbound listener, excluded ports direct.
			tp.ServeInbound(t, redirect.DefaultInboundPort)
			tp.ServePodDirect(t, 22)
			tp.ServePodDirect(t, 7000)
			for _, c := range []struct {
				dst  string
				want string
			}{
				{"10.99.0.2:7000", "redirected"},
				{"[fd99::2]:7000", "redirected"},
				{"10.99.0.2:22", "direct"},
				{"[fd99::2]:22", "direct"},
			} {
				dst := netip.MustParseAddrPort(c.dst)
				got, err := tp.DialFromPeer(dst)
				if err != nil {
					t.Fatalf("inbound dial %s: %v", dst, err)
				}
				if want := c.want + " " + dst.String(); got != want {
					t.Errorf("inbound dial %s: got %q, want %q", dst, got, want)
				}
			}
			// UDP to an excluded CIDR passes.
			if _, err := tp.SendUDP(otherUID, netip.MustParseAddrPort("10.99.0.3:5353")); err != nil {
				t.Errorf("UDP to excluded CIDR: %v", err)
			}

			// Inbound off again: AB_INBOUND must disappear.
			def := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
			if err := do(func() error { return b.Apply(def) }); err != nil {
				t.Fatal(err)
			}
			if err := do(func() error { return b.Verify(def) }); err != nil {
				t.Fatal(err)
			}
			if err := do(func() error { return b.Verify(full) }); err == nil {
				t.Error("verify of the full spec passed against the default rules")
			}
			// IPv4 only: the IPv6 rules must go.
			v4 := testSpec([]redirect.Family{redirect.IPv4})
			if err := do(func() error { return b.Apply(v4) }); err != nil {
				t.Fatal(err)
			}
			if err := do(func() error { return b.Verify(v4) }); err != nil {
				t.Fatal(err)
			}
			if name != redirect.BackendNFTables {
				// A duplicated jump is "extra"; Apply folds it back to one.
				bin := iptBin(name, redirect.IPv4)
				if _, err := redirecttest.Output(tp.Pod, bin, "-t", "nat", "-A", "OUTPUT", "-j", "AB_REDIRECT"); err != nil {
					t.Fatal(err)
				}
				if err := do(func() error { return b.Verify(v4) }); err == nil || !strings.Contains(err.Error(), "2 jumps") {
					t.Errorf("verify with a duplicated jump: %v, want a complaint about 2 jumps", err)
				}
				if err := do(func() error { return b.Apply(v4) }); err != nil {
					t.Fatal(err)
				}
				if err := do(func() error { return b.Verify(v4) }); err != nil {
					t.Errorf("after re-apply: %v", err)
				}
			}
			if err := do(b.Remove); err != nil {
				t.Fatal(err)
			}
			assertNothingLeft(t, tp.Pod)
		})
	}
}
