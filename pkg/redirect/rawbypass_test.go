package redirect_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// netRawOnly is an app container process with nothing but CAP_NET_RAW,
// which containerd's default capability set gives every container: a
// non-proxy UID, so the UID match does not let it through.
var netRawOnly = redirecttest.Proc{UID: otherUID, Caps: []uintptr{unix.CAP_NET_RAW}}

// rawCase is one packet such a process makes, sent with a marker payload
// and looked for on the peer's side of the link.
type rawCase struct {
	name     string
	mode     string
	dst      string
	v1Leaks  bool // leaves the pod under the security-model-v1 rules
	nowLeaks bool // leaves the pod under the current rules
}

var rawCases = []rawCase{
	{"raw TCP SYN|FIN v4", redirecttest.ModeRawTCPSynFin, "10.99.0.3:9090", true, false},
	{"raw TCP SYN|FIN v6", redirecttest.ModeRawTCPSynFin, "[fd99::3]:9090", true, false},
	{"raw TCP no flags v4", redirecttest.ModeRawTCPNoFlags, "10.99.0.3:9090", true, false},
	{"raw TCP no flags v6", redirecttest.ModeRawTCPNoFlags, "[fd99::3]:9090", true, false},
	{"ICMP destination unreachable, no flow", redirecttest.ModeICMP(3, 0), "10.99.0.3", true, false},
	{"ICMP time exceeded, no flow", redirecttest.ModeICMP(11, 0), "10.99.0.3", true, false},
	{"ICMPv6 destination unreachable, no flow", redirecttest.ModeICMP(1, 0), "fd99::3", true, false},
	{"ICMPv6 packet too big, no flow", redirecttest.ModeICMP(2, 0), "fd99::3", true, false},
	// fd98::/64 is off-link, routed via the peer: a router would carry it on.
	{"ND neighbour solicitation to an off-link address", redirecttest.ModeICMP(135, 255), "fd98::7", true, false},
	{"ND neighbour advertisement to an off-link address", redirecttest.ModeICMP(136, 255), "fd98::7", true, false},
	{"ND router solicitation to an off-link address", redirecttest.ModeICMP(133, 255), "fd98::7", true, false},
	{"MLDv2 report to an off-link address", redirecttest.ModeICMP(143, 1), "fd98::7", true, false},
	{"ND neighbour solicitation, link multicast, hop limit 64", redirecttest.ModeICMP(135, 64), "ff02::1%eth0", true, false},
	{"ND neighbour advertisement, on-link global, hop limit 64", redirecttest.ModeICMP(136, 64), "fd99::3", true, false},
	// Allowed on purpose: link scope (no router forwards ff02::/16) or an
	// on-link neighbour (Spec.OnLinkIPv6): the packet reaches the pod's own
	// link and nothing beyond.
	{"ND neighbour advertisement, on-link global, hop limit 255", redirecttest.ModeICMP(136, 255), "fd99::3", true, true},
	// Allowed on purpose: link scope, so it reaches the node's end of the
	// veth and nothing beyond (no router forwards ff02::/16).
	{"ND neighbour solicitation, link multicast, hop limit 255", redirecttest.ModeICMP(135, 255), "ff02::1%eth0", true, true},
	// Not stoppable by rules in the pod netns: AF_PACKET frames never pass
	// its netfilter hooks. What stops it is refusing CAP_NET_RAW at
	// admission (manifests/policies, docs/security-model.md).
	{"AF_PACKET UDP frame", redirecttest.ModePacketUDP, "10.99.0.3:5353", true, true},
}

// TestRawBypassesClosed sends, with real packets, every way out that a
// process with only CAP_NET_RAW had around the security-model-v1 rules,
// first through those rules (each must leave the pod: the hole was real and
// the sender works) and then through the current ones (each must not,
// except the two cases marked above). Also: SO_MARK 0x539, which NET_RAW
// may set since Linux 5.17, took TCP direct under v1 and is redirected now
// unless Spec.MarkBypass; and the ICMP errors the kernel sends for a real
// flow (port unreachable for UDP to a closed port) still leave.
func TestRawBypassesClosed(t *testing.T) {
	for _, name := range redirect.AllBackends {
		for _, rules := range []string{"v1", "now", "now+markBypass"} {
			t.Run(name+"/"+rules, func(t *testing.T) {
				b, err := redirect.New(name)
				if err != nil {
					t.Fatal(err)
				}
				tp := redirecttest.NewTopology(t)
				tp.ServeRedirect(t, redirect.DefaultOutboundPort)
				tp.ServePeer(t, peerTCPPort)
				capture := tp.CapturePeer(t)
				if _, err := redirecttest.Output(tp.Pod, "ip", "-6", "route", "add", "fd98::/64", "via", redirecttest.PeerV6.String()); err != nil {
					t.Fatal(err)
				}
				spec := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
				if err := tp.Do(func() (err error) { spec.OnLinkIPv6, err = redirect.OnLinkIPv6(); return err }); err != nil {
					t.Fatal(err)
				}
				if want := []netip.Prefix{netip.MustParsePrefix("fd99::/64")}; fmt.Sprint(spec.OnLinkIPv6) != fmt.Sprint(want) {
					t.Fatalf("OnLinkIPv6() in the pod netns = %v, want %v (the fd98::/64 route has a gateway)", spec.OnLinkIPv6, want)
				}
				switch rules {
				case "v1":
					spec = redirect.V1Rules(spec)
				case "now+markBypass":
					spec.MarkBypass = true
				}
				if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
					t.Fatal(err)
				}
				if err := tp.Do(func() error { return b.Verify(spec) }); err != nil {
					t.Fatal(err)
				}
				if rules == "v1" {
					// A pod programmed before the upgrade fails Verify (CNI
					// CHECK) against today's rules, as docs/security-model.md
					// says, naming the missing invalid-state drop.
					now := testSpec([]redirect.Family{redirect.IPv4, redirect.IPv6})
					now.OnLinkIPv6 = spec.OnLinkIPv6
					err := tp.Do(func() error { return b.Verify(now) })
					if err == nil || !strings.Contains(err.Error(), "missing") {
						t.Errorf("Verify of today's rules against the v1 rules: %v; want the differences listed", err)
					}
				}

				// SO_MARK as a non-proxy UID with CAP_NET_RAW only.
				markDirect := rules != "now"
				for _, d := range []string{"10.99.0.3:9090", "[fd99::3]:9090"} {
					got, err := redirecttest.RunHelperAs(tp.Pod, netRawOnly, "tcpmark", d, "")
					if err != nil {
						t.Fatalf("SO_MARK dial %s: %v (CAP_NET_RAW must be enough to set SO_MARK on this kernel)", d, err)
					}
					want := "redirected " + d
					if markDirect {
						want = "direct " + d
					}
					if got != want {
						t.Errorf("SO_MARK %#x as uid %d with CAP_NET_RAW to %s: %q, want %q", redirect.DefaultMark, otherUID, d, got, want)
					}
				}

				if rules == "now+markBypass" {
					return // the raw cases do not depend on the mark
				}
				for i, c := range rawCases {
					marker := fmt.Sprintf("ab-leak-%s-%d-%d", rules, i, time.Now().UnixNano())
					out, sendErr := redirecttest.RunHelperAs(tp.Pod, netRawOnly, c.mode, c.dst, marker)
					want := c.nowLeaks
					if rules == "v1" {
						want = c.v1Leaks
					}
					wait := 300 * time.Millisecond
					if want {
						wait = 3 * time.Second
					}
					if got := capture.Saw(marker, wait); got != want {
						t.Errorf("%s to %s: left the pod = %v, want %v (sender: %q, %v)", c.name, c.dst, got, want, out, sendErr)
					}
				}

				// The kernel's own ICMP error for a real flow is RELATED; the
				// peer resolves the pod from its global address fd99::3, so
				// this needs the on-link NA too.
				for _, d := range []string{"10.99.0.2:5999", "[fd99::2]:5999"} {
					_, err := redirecttest.RunHelper(tp.Peer, 0, "udp", d)
					if err == nil || !strings.Contains(err.Error(), "connection refused") {
						t.Errorf("UDP from the peer to closed pod port %s: %v; want connection refused (the pod's port unreachable must leave)", d, err)
					}
				}
				// The raw cases left the pod's IPv6 working: a fresh
				// connection to the peer is still redirected.
				dst := netip.AddrPortFrom(redirecttest.PeerAltV6, peerTCPPort)
				if got, err := tp.Dial(otherUID, dst); err != nil || got != "redirected "+dst.String() {
					t.Errorf("dial %s after the raw cases: %q, %v; want redirected", dst, got, err)
				}
			})
		}
	}
}
