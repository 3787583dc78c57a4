// Package redirect holds the declarative model of a pod's egress redirect rules
// and the backends (nftables via netlink, iptables-nft, iptables-legacy) that
// render it into a network namespace.
//
// The model is equal in effect to proxy-init's enforce-redirect mode:
//
//	nat OUTPUT  (AB_REDIRECT): RETURN the proxy UID (and, only with
//	            MarkBypass, mark 0x539/0xfff), lo, loopback addresses, DNS to
//	            the resolvers, excluded CIDRs/ports; REDIRECT every other TCP
//	            connection to OutboundPort.
//	filter OUTPUT (AB_NOTCP):  DROP conntrack-invalid packets first; ACCEPT
//	            DNS to the resolvers, the proxy UID, loopback, TCP, excluded
//	            CIDRs, the ICMP/ICMPv6 errors conntrack relates to a known
//	            flow, and link-scoped IPv6 neighbour discovery and MLD (list
//	            and reasons in rules.go); DROP every other non-TCP packet
//	            (UDP, QUIC, ping, ...).
//	nat PREROUTING (AB_INBOUND, optional): REDIRECT inbound TCP to InboundPort
//	            except ExcludeInboundPorts.
//
// IPv6 mirrors IPv4. A pod that got only IPv4 addresses but has IPv6 enabled
// in its netns (IPv6Enabled) still has link-local IPv6 and needs the IPv6
// rules too; with IPv4-only Resolvers they have no DNS exception, drop every
// non-TCP packet and redirect TCP to [::1]:OutboundPort. TCP to a link-local
// destination cannot reach the proxy (the socket is bound to the interface,
// and ::1 is not routable there after REDIRECT): it fails closed, the SYN
// never leaves the pod.
package redirect

import (
	"fmt"
	"net/netip"
	"sort"
)

// Defaults match the AuthBridge sidecar (authbridge-proxy).
const (
	DefaultProxyUID     = 1337
	DefaultOutboundPort = 8082
	DefaultInboundPort  = 8083
	DefaultMark         = 0x539
	DefaultMarkMask     = 0xfff
)

// Chain names are part of the documented interface: operators grep for them.
const (
	ChainRedirect = "AB_REDIRECT"
	ChainNoTCP    = "AB_NOTCP"
	ChainInbound  = "AB_INBOUND"
	// NFTTableName is the one nftables table (per family: ip and ip6) the
	// project owns in a pod's netns.
	NFTTableName = "authbridge"
)

// Family is an IP family the rules are programmed for.
type Family string

const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Spec is the complete, declarative description of one pod's rules.
// The zero value is not valid; start from DefaultSpec.
type Spec struct {
	// Families to program; a dual-stack pod has both.
	Families []Family
	// ProxyUID is the UID of authbridge-proxy; its traffic goes direct.
	ProxyUID uint32
	// OutboundPort is the proxy's transparent egress listener.
	OutboundPort uint16
	// Mark/MarkMask: with MarkBypass, TCP from sockets carrying this mark
	// goes direct (for a proxy that cannot run as ProxyUID and marks its
	// sockets with SO_MARK instead).
	Mark     uint32
	MarkMask uint32
	// MarkBypass adds the mark RETURN to AB_REDIRECT. Off by default: any
	// process in the pod that can set SO_MARK bypasses the redirect with
	// it, and since Linux 5.17 CAP_NET_RAW suffices for SO_MARK (not only
	// CAP_NET_ADMIN); containerd gives NET_RAW to every container unless
	// dropped. Turn it on only with an admission policy that refuses
	// NET_RAW and NET_ADMIN to the app containers (manifests/policies).
	MarkBypass bool
	// Resolvers are the pod's DNS servers: DNS (TCP+UDP 53) to them passes.
	Resolvers []netip.Addr
	// ExcludeOutboundCIDRs are never redirected (and UDP to them is not dropped).
	ExcludeOutboundCIDRs []netip.Prefix
	// OnLinkIPv6 are the IPv6 prefixes the pod reaches without a gateway
	// (OnLinkIPv6() reads them in the pod's netns): neighbour solicitations
	// and advertisements with hop limit 255 may go to addresses in them, so
	// a neighbour that resolves the pod from a global address (another pod
	// on a bridge, the bridge's gateway address) gets its answer. Each is a
	// /64 or longer (MinOnLinkBits); link-local scope is always allowed.
	OnLinkIPv6 []netip.Prefix
	// ExcludeOutboundPorts are TCP destination ports never redirected.
	ExcludeOutboundPorts []uint16
	// Inbound redirect (off by default).
	InboundEnabled      bool
	InboundPort         uint16
	ExcludeInboundPorts []uint16

	// v1Rules renders the rule set of security-model-v1 (mark bypass for
	// anyone, no invalid-state drop, ICMP errors and ND/MLD accepted by type
	// alone), which the bypass tests show leaking. Set only by tests
	// (export_test.go): production code cannot select it.
	v1Rules bool
}

// DefaultSpec returns the strict defaults for the given families.
func DefaultSpec(families ...Family) Spec {
	if len(families) == 0 {
		families = []Family{IPv4}
	}
	return Spec{
		Families:     families,
		ProxyUID:     DefaultProxyUID,
		OutboundPort: DefaultOutboundPort,
		Mark:         DefaultMark,
		MarkMask:     DefaultMarkMask,
		InboundPort:  DefaultInboundPort,
	}
}

// FieldError names the offending field and how to fix it.
type FieldError struct {
	Field string
	Value any
	Fix   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %v: %s", e.Field, e.Value, e.Fix)
}

// Validate refuses every value the backends cannot render faithfully.
func (s Spec) Validate() error {
	if len(s.Families) == 0 {
		return &FieldError{"families", s.Families, `set at least one of "ipv4", "ipv6"`}
	}
	seen := map[Family]bool{}
	for _, f := range s.Families {
		if f != IPv4 && f != IPv6 {
			return &FieldError{"families", f, `allowed values are "ipv4" and "ipv6"`}
		}
		if seen[f] {
			return &FieldError{"families", f, "list each family once"}
		}
		seen[f] = true
	}
	if s.OutboundPort == 0 {
		return &FieldError{"outboundPort", s.OutboundPort, "set the proxy's transparent listener port (1-65535, default 8082)"}
	}
	if s.MarkMask == 0 {
		return &FieldError{"markMask", s.MarkMask, "use a non-zero mask (default 0xfff)"}
	}
	if s.Mark&^s.MarkMask != 0 {
		return &FieldError{"mark", fmt.Sprintf("%#x", s.Mark), fmt.Sprintf("the mark must fit inside markMask %#x", s.MarkMask)}
	}
	if s.ProxyUID == 0 {
		return &FieldError{"proxyUID", s.ProxyUID, "the proxy must not run as root; use its real UID (default 1337)"}
	}
	for _, r := range s.Resolvers {
		if !r.IsValid() || r.Zone() != "" {
			return &FieldError{"resolvers", r, "use plain IPv4/IPv6 addresses without zone"}
		}
	}
	for _, p := range s.ExcludeOutboundCIDRs {
		if !p.IsValid() {
			return &FieldError{"excludeOutboundCIDRs", p, "use CIDR notation such as 10.0.0.0/8"}
		}
	}
	for _, p := range s.OnLinkIPv6 {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() < MinOnLinkBits {
			return &FieldError{"onLinkIPv6", p, fmt.Sprintf("list IPv6 prefixes of %d bits or more (the routes without gateway in the pod's netns)", MinOnLinkBits)}
		}
	}
	for _, p := range s.ExcludeOutboundPorts {
		if p == 0 {
			return &FieldError{"excludeOutboundPorts", p, "ports are 1-65535"}
		}
	}
	if s.InboundEnabled {
		if s.InboundPort == 0 {
			return &FieldError{"inboundPort", s.InboundPort, "set the proxy's inbound listener port (default 8083)"}
		}
		for _, p := range s.ExcludeInboundPorts {
			if p == 0 {
				return &FieldError{"excludeInboundPorts", p, "ports are 1-65535"}
			}
		}
	}
	return nil
}

// Has reports whether the spec programs family f.
func (s Spec) Has(f Family) bool {
	for _, x := range s.Families {
		if x == f {
			return true
		}
	}
	return false
}

// ResolversFor returns the resolvers of one family, sorted, so renderings are stable.
func (s Spec) ResolversFor(f Family) []netip.Addr {
	var out []netip.Addr
	for _, r := range s.Resolvers {
		if r.Is4() == (f == IPv4) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// ExcludedCIDRsFor returns the excluded CIDRs of one family, sorted.
func (s Spec) ExcludedCIDRsFor(f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s.ExcludeOutboundCIDRs {
		if p.Addr().Is4() == (f == IPv4) {
			out = append(out, p.Masked())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Backend renders a Spec into the current network namespace. Callers enter
// the pod's netns (containernetworking/plugins pkg/ns) before calling.
type Backend interface {
	// Name is one of BackendNFTables, BackendIPTablesNFT, BackendIPTablesLegacy.
	Name() string
	// Apply programs the spec idempotently: applying twice leaves one copy.
	Apply(Spec) error
	// Verify reads the rules back from the kernel and fails unless they equal
	// the spec exactly (nothing missing, nothing extra).
	Verify(Spec) error
	// Remove deletes everything the backend owns; removing twice succeeds.
	Remove() error
}

// Backend names, as reported in labels, metrics and the node state file.
const (
	BackendNFTables       = "nftables"
	BackendIPTablesNFT    = "iptables-nft"
	BackendIPTablesLegacy = "iptables-legacy"
)

// AllBackends is the default preference order: netlink first because it needs
// no host binaries and programs a pod in one atomic batch.
var AllBackends = []string{BackendNFTables, BackendIPTablesNFT, BackendIPTablesLegacy}

// CoveredFamily returns the family (IPv4 or IPv6) whose whole address
// space the prefixes cover together, or "" when none: 0.0.0.0/1 with
// 128.0.0.0/1 turns enforcement off for IPv4 as surely as 0.0.0.0/0.
func CoveredFamily(ps []netip.Prefix) Family {
	for _, f := range []Family{IPv4, IPv6} {
		var fam []netip.Prefix
		for _, p := range ps {
			if p.IsValid() && p.Addr().Is4() == (f == IPv4) {
				fam = append(fam, p.Masked())
			}
		}
		if coversAll(fam, f) {
			return f
		}
	}
	return ""
}

// coversAll walks the prefixes sorted by first address and reports whether
// they leave no gap from the family's first address to its last.
func coversAll(ps []netip.Prefix, f Family) bool {
	if len(ps) == 0 {
		return false
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Less(ps[j].Addr()) })
	next := netip.IPv4Unspecified() // the first address not yet covered
	if f == IPv6 {
		next = netip.IPv6Unspecified()
	}
	for _, p := range ps {
		if next.Less(p.Addr()) {
			return false // gap before p
		}
		last := lastAddr(p)
		if !last.Less(next) {
			n := last.Next()
			if !n.IsValid() {
				return true // reached the end of the address space
			}
			next = n
		}
	}
	return false
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
