// Package redirect holds the declarative model of a pod's egress redirect rules
// and the backends (nftables via netlink, iptables-nft, iptables-legacy) that
// render it into a network namespace.
//
// The model is equal in effect to proxy-init's enforce-redirect mode:
//
//	nat OUTPUT  (AB_REDIRECT): RETURN mark 0x539/0xfff, proxy UID, lo, loopback
//	            addresses, DNS to the resolvers, excluded CIDRs/ports;
//	            REDIRECT every other TCP connection to OutboundPort.
//	filter OUTPUT (AB_NOTCP):  ACCEPT DNS to the resolvers, the proxy UID,
//	            loopback, TCP, excluded CIDRs, the ICMP/ICMPv6 errors and
//	            IPv6 neighbour discovery that PMTU and IPv6 need (list and
//	            reasons in rules.go); DROP every other non-TCP packet (UDP,
//	            QUIC, ping, ...).
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
	// Mark/MarkMask: packets carrying this mark go direct (proxy's SO_MARK).
	Mark     uint32
	MarkMask uint32
	// Resolvers are the pod's DNS servers: DNS (TCP+UDP 53) to them passes.
	Resolvers []netip.Addr
	// ExcludeOutboundCIDRs are never redirected (and UDP to them is not dropped).
	ExcludeOutboundCIDRs []netip.Prefix
	// ExcludeOutboundPorts are TCP destination ports never redirected.
	ExcludeOutboundPorts []uint16
	// Inbound redirect (off by default).
	InboundEnabled      bool
	InboundPort         uint16
	ExcludeInboundPorts []uint16
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
