package redirect

import (
	"net/netip"
	"sort"
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
	hopLimit  *uint8 // IPv6 hop limit equals
	ctState   uint32 // conntrack state bits, any of them (ctInvalid, ctRelated)
}

// Conntrack state bits as nftables numbers them (NF_CT_STATE_INVALID_BIT,
// NF_CT_STATE_BIT(IP_CT_RELATED)); iptables' --ctstate names the same states.
const (
	ctInvalid uint32 = 1
	ctRelated uint32 = 1 << 2
)

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
// time exceeded, parameter problem; for IPv6 also packet too big), and only
// as conntrack RELATED: the kernel's own errors answer a flow conntrack
// knows, while an error a raw socket makes up relates to nothing and is
// dropped (in the v1 rules any packet of these types left, with any
// payload). Echo request/reply stay dropped: ping is a data channel that
// bypasses the proxy, and probes are TCP/HTTP.
var (
	allowedICMPv4 = []uint8{3, 11, 12}
	allowedICMPv6 = []uint8{1, 2, 3, 4}
)

// IPv6 neighbour discovery (router solicitation 133, neighbour solicitation
// 135 and advertisement 136) and MLDv2 reports (143), without which IPv6
// stops working at all, are conntrack-untracked, so they cannot be tied to
// a flow; instead they are held to the link: ND only with hop limit 255 (RFC
// 4861, what the kernel sends) to a link-local (fe80::/10) or link-local
// multicast (ff02::/16) destination, MLD only with hop limit 1 (RFC 3810)
// to ff02::/16. No router forwards either scope, so such a packet reaches
// the pod's own link (the node's end of the veth) and nothing beyond.
var (
	ndTypes       = []uint8{133, 135, 136}
	mldTypes      = []uint8{143}
	ndScopes      = []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("ff02::/16")}
	mldScope      = netip.MustParsePrefix("ff02::/16")
	ndHopLimit    = uint8(255)
	mldHopLimit   = uint8(1)
	v1ICMPv6Types = []uint8{1, 2, 3, 4, 133, 135, 136, 143}
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
	if s.MarkBypass || s.v1Rules {
		// Anyone who can set SO_MARK can use this: CAP_NET_ADMIN, and on
		// kernels since 5.17 CAP_NET_RAW too (see Spec.MarkBypass).
		redir = append(redir, rule{m: match{markMatch: true, mark: s.Mark, mask: s.MarkMask}, v: vReturn})
	}
	redir = append(redir,
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
	if !s.v1Rules {
		// First: a packet conntrack calls invalid (a raw TCP segment with
		// SYN|FIN or no flags, an ICMP error about no known flow) never
		// reaches NAT, so it would leave unredirected past "tcp accept".
		notcp = append(notcp, rule{m: match{ctState: ctInvalid}, v: vDrop})
	}
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
	notcp = append(notcp, icmpRules(s, f)...)
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

// icmpRules are the ICMP/ICMPv6 accepts of AB_NOTCP (see allowedICMPv4).
func icmpRules(s Spec, f Family) []rule {
	var out []rule
	if s.v1Rules {
		proto, types := uint8(protoICMP), allowedICMPv4
		if f == IPv6 {
			proto, types = protoICMPv6, v1ICMPv6Types
		}
		for _, t := range types {
			out = append(out, rule{m: match{proto: proto, icmpType: u8(t)}, v: vAccept})
		}
		return out
	}
	if f == IPv4 {
		for _, t := range allowedICMPv4 {
			out = append(out, rule{m: match{proto: protoICMP, icmpType: u8(t), ctState: ctRelated}, v: vAccept})
		}
		return out
	}
	for _, t := range allowedICMPv6 {
		out = append(out, rule{m: match{proto: protoICMPv6, icmpType: u8(t), ctState: ctRelated}, v: vAccept})
	}
	for _, p := range ndScopes {
		for _, t := range ndTypes {
			out = append(out, rule{m: match{proto: protoICMPv6, dst: p, icmpType: u8(t), hopLimit: u8(ndHopLimit)}, v: vAccept})
		}
	}
	// Solicitations and (mostly) the solicited advertisements answering
	// them, to neighbours with global addresses on the pod's own link.
	for _, p := range onLinkSorted(s.OnLinkIPv6) {
		for _, t := range []uint8{135, 136} {
			out = append(out, rule{m: match{proto: protoICMPv6, dst: p, icmpType: u8(t), hopLimit: u8(ndHopLimit)}, v: vAccept})
		}
	}
	for _, t := range mldTypes {
		out = append(out, rule{m: match{proto: protoICMPv6, dst: mldScope, icmpType: u8(t), hopLimit: u8(mldHopLimit)}, v: vAccept})
	}
	return out
}

func onLinkSorted(ps []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range ps {
		if p = p.Masked(); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
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
