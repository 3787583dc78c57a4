package redirect

import (
	"net/netip"
)

// The backends share one family-specific rendering of a Spec (chains and
// ordered rules), so nftables and iptables cannot drift apart in meaning.

type verdict int

const (
	vReturn verdict = iota
	vAccept
	vDrop
	vRedirect
)

// match is a conjunction of conditions; zero fields match anything.
type match struct {
	markMatch bool // meta mark & mask == mark
	mark      uint32
	mask      uint32
	uid       *uint32
	oifLo     bool
	proto     uint8 // unix.IPPROTO_* or 0
	dst       netip.Prefix
	dport     uint16
	icmpType  *uint8 // with proto icmp/icmpv6
}

type rule struct {
	m      match
	v      verdict
	toPort uint16 // for vRedirect
}

type chainKind int

const (
	kindNATOutput chainKind = iota
	kindFilterOutput
	kindNATPrerouting
)

type chainRules struct {
	name  string
	kind  chainKind
	rules []rule
}

const (
	protoTCP    = 6
	protoUDP    = 17
	protoICMP   = 1
	protoICMPv6 = 58
	dnsPort     = 53
)

// ICMP types that stay allowed in AB_NOTCP although it drops every other
// non-TCP packet. Decision: errors the pod itself must emit for TCP and path
// MTU to keep working (destination unreachable incl. "fragmentation needed",
// time exceeded, parameter problem; for IPv6 also packet too big) and IPv6
// neighbour/router discovery plus MLDv2 reports, without which IPv6 stops
// working at all. Echo request/reply stay dropped: ping is a data channel
// that bypasses the proxy, and probes are TCP/HTTP.
var (
	allowedICMPv4 = []uint8{3, 11, 12}
	allowedICMPv6 = []uint8{1, 2, 3, 4, 133, 135, 136, 143}
)

func loopbackPrefix(f Family) netip.Prefix {
	if f == IPv4 {
		return netip.MustParsePrefix("127.0.0.0/8")
	}
	return netip.MustParsePrefix("::1/128")
}

func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }

// render returns the chains of one family in rule order.
func render(s Spec, f Family) []chainRules {
	uid := s.ProxyUID
	var redir []rule
	redir = append(redir,
		rule{m: match{markMatch: true, mark: s.Mark, mask: s.MarkMask}, v: vReturn},
		rule{m: match{uid: u32(uid)}, v: vReturn},
		rule{m: match{oifLo: true}, v: vReturn},
		rule{m: match{dst: loopbackPrefix(f)}, v: vReturn},
	)
	var dns []match
	for _, r := range s.ResolversFor(f) {
		p := netip.PrefixFrom(r, r.BitLen())
		dns = append(dns,
			match{proto: protoTCP, dst: p, dport: dnsPort},
			match{proto: protoUDP, dst: p, dport: dnsPort})
	}
	for _, m := range dns {
		redir = append(redir, rule{m: m, v: vReturn})
	}
	cidrs := s.ExcludedCIDRsFor(f)
	for _, p := range cidrs {
		redir = append(redir, rule{m: match{dst: p}, v: vReturn})
	}
	for _, p := range uniqSorted(s.ExcludeOutboundPorts) {
		redir = append(redir, rule{m: match{proto: protoTCP, dport: p}, v: vReturn})
	}
	redir = append(redir, rule{m: match{proto: protoTCP}, v: vRedirect, toPort: s.OutboundPort})

	var notcp []rule
	for _, m := range dns {
		notcp = append(notcp, rule{m: m, v: vAccept})
	}
	notcp = append(notcp,
		rule{m: match{uid: u32(uid)}, v: vAccept},
		rule{m: match{oifLo: true}, v: vAccept},
		rule{m: match{proto: protoTCP}, v: vAccept},
	)
	for _, p := range cidrs {
		notcp = append(notcp, rule{m: match{dst: p}, v: vAccept})
	}
	icmpProto, icmpTypes := uint8(protoICMP), allowedICMPv4
	if f == IPv6 {
		icmpProto, icmpTypes = protoICMPv6, allowedICMPv6
	}
	for _, t := range icmpTypes {
		notcp = append(notcp, rule{m: match{proto: icmpProto, icmpType: u8(t)}, v: vAccept})
	}
	notcp = append(notcp, rule{v: vDrop})

	out := []chainRules{
		{name: ChainRedirect, kind: kindNATOutput, rules: redir},
		{name: ChainNoTCP, kind: kindFilterOutput, rules: notcp},
	}
	if s.InboundEnabled {
		var in []rule
		// The proxy's own listeners are never redirected to themselves.
		ports := uniqSorted(append(append([]uint16{}, s.ExcludeInboundPorts...), s.OutboundPort, s.InboundPort))
		for _, p := range ports {
			in = append(in, rule{m: match{proto: protoTCP, dport: p}, v: vReturn})
		}
		in = append(in, rule{m: match{proto: protoTCP}, v: vRedirect, toPort: s.InboundPort})
		out = append(out, chainRules{name: ChainInbound, kind: kindNATPrerouting, rules: in})
	}
	return out
}

func uniqSorted(ps []uint16) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
