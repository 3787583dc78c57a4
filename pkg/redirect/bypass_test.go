package redirect_test

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

const loopbackAppPort = 7070

// TestBypassesAndICMPEcho sends real traffic through each backend's rules for
// the bypasses and the ICMP echo drop: a socket carrying SO_MARK 0x539 is
// redirected like any other (the mark bypasses only with Spec.MarkBypass,
// see TestRawBypassesClosed), connections to a listener on 127.0.0.1/::1
// reach it (not 8082), ping is dropped while TCP is redirected. Every case
// is first run without rules as a control, so a pass means the rules made
// the difference.
func TestBypassesAndICMPEcho(t *testing.T) {
	for _, name := range redirect.AllBackends {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopology(t)
			spec := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
			tp.ServeRedirect(t, redirect.DefaultOutboundPort)
			tp.ServePeer(t, peerTCPPort)
			tp.ServePodLoopback(t, loopbackAppPort)
			dsts := []netip.AddrPort{
				netip.AddrPortFrom(redirecttest.PeerAltV4, peerTCPPort),
				netip.AddrPortFrom(redirecttest.PeerAltV6, peerTCPPort),
			}
			loops := []netip.AddrPort{
				netip.MustParseAddrPort("127.0.0.1:7070"),
				netip.MustParseAddrPort("[::1]:7070"),
			}
			pings := []netip.Addr{redirecttest.PeerV4, redirecttest.PeerV6}

			// Control: without rules everything goes direct and ping answers.
			for _, p := range pings {
				if got, err := tp.Ping(p); err != nil || !strings.HasPrefix(got, "pong ") {
					t.Fatalf("control: ping %s without rules: %q, %v", p, got, err)
				}
			}
			for _, d := range dsts {
				if got, err := tp.Dial(0, d); err != nil || got != "direct "+d.String() {
					t.Fatalf("control: dial %s without rules: %q, %v", d, got, err)
				}
			}

			if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
				t.Fatal(err)
			}
			for _, d := range dsts {
				// Root without the mark is redirected (root is not the proxy UID) ...
				if got, err := tp.Dial(0, d); err != nil || got != "redirected "+d.String() {
					t.Errorf("dial %s unmarked: %q, %v; want redirected", d, got, err)
				}
				// ... and so is a socket with SO_MARK 0x539.
				if got, err := tp.DialMarked(0, d); err != nil || got != "redirected "+d.String() {
					t.Errorf("dial %s with SO_MARK %#x: %q, %v; want redirected (no mark bypass by default)", d, redirect.DefaultMark, got, err)
				}
			}
			for _, d := range loops {
				if got, err := tp.Dial(otherUID, d); err != nil || got != "direct "+d.String() {
					t.Errorf("dial loopback %s: %q, %v; want the loopback listener, not the redirect", d, got, err)
				}
			}
			for _, p := range pings {
				if got, err := tp.Ping(p); err == nil {
					t.Errorf("ping %s with rules: %q; want the echo request dropped", p, got)
				} else if !strings.Contains(err.Error(), "operation not permitted") {
					t.Errorf("ping %s with rules: %v; want EPERM from the DROP", p, err)
				}
			}
			if err := tp.Do(b.Remove); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestIPTablesJumpPosition: an ACCEPT inserted ahead of our jump in a built-in
// chain ends the traversal there, so Verify must refuse it and Apply must
// move the jump back to position 1. Shown with real traffic too.
func TestIPTablesJumpPosition(t *testing.T) {
	for _, name := range []string{redirect.BackendIPTablesNFT, redirect.BackendIPTablesLegacy} {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopology(t)
			spec := testSpec([]redirect.Family{redirect.IPv4})
			spec.InboundEnabled = true
			tp.ServeRedirect(t, redirect.DefaultOutboundPort)
			tp.ServePeer(t, peerTCPPort, nonDNSPort)
			if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
				t.Fatal(err)
			}
			bin := iptBin(name, redirect.IPv4)
			dst := netip.AddrPortFrom(redirecttest.PeerAltV4, peerTCPPort)
			udp := netip.AddrPortFrom(redirecttest.PeerAltV4, nonDNSPort)
			for _, c := range []struct{ table, chain, jump string }{
				{"nat", "OUTPUT", redirect.ChainRedirect},
				{"filter", "OUTPUT", redirect.ChainNoTCP},
				{"nat", "PREROUTING", redirect.ChainInbound},
			} {
				if _, err := redirecttest.Output(tp.Pod, bin, "-t", c.table, "-I", c.chain, "1", "-j", "ACCEPT"); err != nil {
					t.Fatal(err)
				}
				err := tp.Do(func() error { return b.Verify(spec) })
				if err == nil {
					t.Fatalf("verify passed with an ACCEPT ahead of %s in %s %s", c.jump, c.table, c.chain)
				}
				if want := "jump " + c.chain + " -> " + c.jump + " is at position 2"; !strings.Contains(err.Error(), want) {
					t.Errorf("verify error %q does not say %q", err, want)
				}
				// The bypass is real: the traffic escapes the rules.
				switch c.jump {
				case redirect.ChainRedirect:
					if got, err := tp.Dial(otherUID, dst); err != nil || got != "direct "+dst.String() {
						t.Errorf("with ACCEPT first in nat OUTPUT: %q, %v; expected the bypass to be real", got, err)
					}
				case redirect.ChainNoTCP:
					if _, err := tp.SendUDP(otherUID, udp); err != nil {
						t.Errorf("with ACCEPT first in filter OUTPUT: UDP %v; expected the bypass to be real", err)
					}
				}
				if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
					t.Fatal(err)
				}
				if err := tp.Do(func() error { return b.Verify(spec) }); err != nil {
					t.Errorf("verify after re-apply: %v", err)
				}
				out, err := redirecttest.Output(tp.Pod, bin, "-t", c.table, "-S", c.chain)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) < 3 || lines[1] != "-A "+c.chain+" -j "+c.jump {
					t.Errorf("after re-apply %s %s is\n%s\nwant the jump to %s first", c.table, c.chain, out, c.jump)
				}
				if !strings.Contains(out, "-A "+c.chain+" -j ACCEPT") {
					t.Errorf("re-apply removed the foreign ACCEPT from %s %s:\n%s", c.table, c.chain, out)
				}
			}
			if got, err := tp.Dial(otherUID, dst); err != nil || got != "redirected "+dst.String() {
				t.Errorf("after re-apply: %q, %v; want redirected", got, err)
			}
			if got, err := tp.SendUDP(otherUID, udp); err == nil {
				t.Errorf("after re-apply: UDP answered %q; want dropped", got)
			}
		})
	}
}

// TestNFTablesForeignAcceptCannotBypass: another table's base chains on the
// same hooks at earlier priorities (filter -200, nat -150) that accept
// everything do not stop
// our base chains (accept ends only the chain it is in; see nftables.go).
func TestNFTablesForeignAcceptCannotBypass(t *testing.T) {
	b, err := redirect.New(redirect.BackendNFTables)
	if err != nil {
		t.Fatal(err)
	}
	tp := redirecttest.NewTopology(t)
	spec := testSpec([]redirect.Family{redirect.IPv4})
	tp.ServeRedirect(t, redirect.DefaultOutboundPort)
	tp.ServePeer(t, peerTCPPort, nonDNSPort)
	if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"add", "table", "ip", "foreign"},
		// nat base chains must come after conntrack (-200): -150 is the
		// earliest, still ahead of our -100.
		{"add", "chain", "ip", "foreign", "early_nat", "{ type nat hook output priority -150; policy accept; }"},
		{"add", "rule", "ip", "foreign", "early_nat", "accept"},
		{"add", "chain", "ip", "foreign", "early_filter", "{ type filter hook output priority -200; policy accept; }"},
		{"add", "rule", "ip", "foreign", "early_filter", "accept"},
	} {
		if _, err := redirecttest.Output(tp.Pod, "nft", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tp.Do(func() error { return b.Verify(spec) }); err != nil {
		t.Errorf("verify with a foreign table present: %v", err)
	}
	dst := netip.AddrPortFrom(redirecttest.PeerAltV4, peerTCPPort)
	if got, err := tp.Dial(otherUID, dst); err != nil || got != "redirected "+dst.String() {
		t.Errorf("with foreign accept chains at priorities -200/-150: %q, %v; want redirected", got, err)
	}
	if got, err := tp.SendUDP(otherUID, netip.AddrPortFrom(redirecttest.PeerAltV4, nonDNSPort)); err == nil {
		t.Errorf("with a foreign accept chain at priority -200: UDP answered %q; want dropped", got)
	}
	// Re-apply leaves the foreign table alone.
	if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
		t.Fatal(err)
	}
	if out, err := redirecttest.Output(tp.Pod, "nft", "list", "table", "ip", "foreign"); err != nil || !strings.Contains(out, "early_nat") {
		t.Errorf("foreign table after re-apply: %v\n%s", err, out)
	}
}

// TestNFTablesReapplyRepairsChains: the fast re-apply (flush rules, keep
// chains) must not keep a chain whose hook settings were changed.
func TestNFTablesReapplyRepairsChains(t *testing.T) {
	b, err := redirect.New(redirect.BackendNFTables)
	if err != nil {
		t.Fatal(err)
	}
	tp := redirecttest.NewTopology(t)
	spec := testSpec([]redirect.Family{redirect.IPv4})
	if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][]string{
		{"add", "chain", "ip", "authbridge", "AB_NOTCP", "{ policy drop; }"},
		{"add", "chain", "ip", "authbridge", "EXTRA"},
	} {
		if _, err := redirecttest.Output(tp.Pod, "nft", tc...); err != nil {
			t.Fatal(err)
		}
		if err := tp.Do(func() error { return b.Verify(spec) }); err == nil {
			t.Errorf("verify passed after nft %s", strings.Join(tc, " "))
		}
		if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
			t.Fatal(err)
		}
		if err := tp.Do(func() error { return b.Verify(spec) }); err != nil {
			t.Errorf("after nft %s and re-apply: %v", strings.Join(tc, " "), err)
		}
	}
}

// TestIPv6EnabledPerNetNS reads the IPv6 switch of the calling thread's netns.
func TestIPv6EnabledPerNetNS(t *testing.T) {
	testenv.Root(t, "network namespaces")
	on, err := ns.TempNetNS()
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	off, err := ns.TempNetNS()
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if err := off.Do(func(ns.NetNS) error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	check := func(n ns.NetNS, want bool) {
		t.Helper()
		var got bool
		if err := n.Do(func(ns.NetNS) error {
			var err error
			got, err = redirect.IPv6Enabled()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("IPv6Enabled() in %s = %v, want %v", n.Path(), got, want)
		}
	}
	check(on, true)
	check(off, false)
	check(on, true) // the disabled netns did not leak into the other one
}

// TestIPv4OnlyPodLinkLocal: a pod with only IPv4 addresses still has
// link-local IPv6 and can reach its neighbour over it. IPv4-only rules leave
// that path open (the control). Rules for both families with IPv4-only
// resolvers render valid IPv6 rules without DNS exceptions; with them UDP to
// the link-local neighbour (port 53 included) is dropped with EPERM, and TCP
// to it never leaves the pod: counted at the neighbour's ingress, not one
// packet arrives.
//
// TCP to a link-local address cannot be redirected to the proxy, though: a
// link-local connect binds the socket to the interface (sin6_scope_id), and
// after REDIRECT rewrites the destination to ::1 the kernel's re-route
// (ip6_route_me_harder) looks ::1 up on that interface, finds no route and
// drops the SYN, so the connect times out instead of reaching 8082. Fail
// closed, not redirected; asserted here as what the kernel does.
func TestIPv4OnlyPodLinkLocal(t *testing.T) {
	for _, name := range redirect.AllBackends {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopologyV4Only(t)
			tp.ServeRedirect(t, redirect.DefaultOutboundPort)
			tp.ServePeer(t, peerTCPPort)
			peerLL := redirecttest.PeerLinkLocal // zone eth0: the pod's side
			tcp := netip.AddrPortFrom(peerLL, peerTCPPort)
			udps := []netip.AddrPort{netip.AddrPortFrom(peerLL, nonDNSPort), netip.AddrPortFrom(peerLL, 53)}
			for _, u := range udps {
				tp.ServePeerUDP(t, netip.AddrPortFrom(peerLL.WithZone("peer0"), u.Port()))
			}
			arrived := watchPeerTCP6(t, tp)

			v4 := redirect.DefaultSpec(redirect.IPv4)
			v4.Resolvers = []netip.Addr{redirecttest.PeerV4}
			if err := tp.Do(func() error { return b.Apply(v4) }); err != nil {
				t.Fatal(err)
			}
			if got, err := tp.Dial(otherUID, tcp); err != nil || !strings.HasPrefix(got, "direct ") {
				t.Fatalf("control: IPv4-only rules, TCP to %s: %q, %v; want direct (the gap)", tcp, got, err)
			}
			if got, err := tp.SendUDP(otherUID, udps[0]); err != nil || !strings.HasPrefix(got, "udp ") {
				t.Fatalf("control: IPv4-only rules, UDP to %s: %q, %v; want an answer (the gap)", udps[0], got, err)
			}
			if n := arrived(); n == 0 {
				t.Fatalf("control: the peer's ingress counter saw no IPv6 TCP packet; the watch does not work")
			}

			both := v4
			both.Families = []redirect.Family{redirect.IPv4, redirect.IPv6}
			if err := tp.Do(func() error { return b.Apply(both) }); err != nil {
				t.Fatal(err)
			}
			if err := tp.Do(func() error { return b.Verify(both) }); err != nil {
				t.Fatal(err)
			}
			out := readBack(t, tp.Pod, name, redirect.IPv6)
			if name == redirect.BackendNFTables {
				out, err = redirecttest.Output(tp.Pod, "nft", "list", "table", "ip6", redirect.NFTTableName)
				if err != nil {
					t.Fatal(err)
				}
			}
			if strings.Contains(out, "dport 53") {
				t.Errorf("IPv6 rules have a DNS exception without an IPv6 resolver:\n%s", out)
			}
			assertRulesReadBack(t, tp.Pod, name, both)

			before := arrived()
			if got, err := tp.Dial(otherUID, tcp); err == nil {
				t.Errorf("TCP to link-local %s: %q; want no connection (redirect to ::1 cannot work for an interface-bound socket, see above)", tcp, got)
			}
			if n := arrived() - before; n != 0 {
				t.Errorf("TCP to link-local %s: %d packets reached the neighbour; want none", tcp, n)
			}
			for _, u := range udps {
				if got, err := tp.SendUDP(otherUID, u); err == nil {
					t.Errorf("UDP to link-local %s answered %q; want dropped", u, got)
				} else if !strings.Contains(err.Error(), "operation not permitted") {
					t.Errorf("UDP to link-local %s: %v; want EPERM from the DROP", u, err)
				}
			}
			// The proxy UID still reaches the neighbour over link-local.
			if got, err := tp.Dial(redirect.DefaultProxyUID, tcp); err != nil || !strings.HasPrefix(got, "direct ") {
				t.Errorf("proxy UID TCP to %s: %q, %v; want direct", tcp, got, err)
			}
			// IPv4 still works as before.
			d4 := netip.AddrPortFrom(redirecttest.PeerAltV4, peerTCPPort)
			if got, err := tp.Dial(otherUID, d4); err != nil || got != "redirected "+d4.String() {
				t.Errorf("TCP to %s: %q, %v; want redirected", d4, got, err)
			}
			if err := tp.Do(b.Remove); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// watchPeerTCP6 counts the IPv6 TCP packets arriving on the peer's veth, at
// the netdev ingress hook (before any routing or martian check), and returns
// a function reading the count.
func watchPeerTCP6(t *testing.T, tp *redirecttest.Topology) func() int {
	t.Helper()
	for _, cmd := range [][]string{
		{"add", "table", "netdev", "watch"},
		{"add", "chain", "netdev", "watch", "in", "{ type filter hook ingress device peer0 priority 0; }"},
		{"add", "rule", "netdev", "watch", "in", "meta", "protocol", "ip6", "meta", "l4proto", "tcp", "counter"},
	} {
		if _, err := redirecttest.Output(tp.Peer, "nft", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	return func() int {
		out, err := redirecttest.Output(tp.Peer, "nft", "list", "chain", "netdev", "watch", "in")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(out[strings.Index(out, "counter packets ")+len("counter packets "):])
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("counter in %q: %v", out, err)
		}
		return n
	}
}
