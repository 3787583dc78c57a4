package redirect

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// Two text forms of the nftables rules:
//
//   - nftText renders a Spec the way `nft list table` prints it: the golden
//     files under testdata hold it, so a rule change is a readable diff, and a
//     kernel test checks that it is what the kernel reports after Apply.
//   - exprText renders one expression from the fields this package sets,
//     never through %v of the library's structs: a field the library adds
//     (or a change in how it prints) must not turn Verify into a failure, and
//     an expression of a type this package never writes is reported by its
//     type name, so it still shows up as a difference.

// nftText is the `nft list table` text of every family in the spec.
func nftText(s Spec) string {
	var b strings.Builder
	for _, nf := range nftFamilies {
		if !s.Has(nf.f) {
			continue
		}
		fmt.Fprintf(&b, "table %s %s {\n", famName(nf.fam), NFTTableName)
		for i, cr := range render(s, nf.f) {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n", cr.name, nftChainHeader(cr.kind))
			for _, r := range cr.rules {
				fmt.Fprintf(&b, "\t\t%s\n", nftRuleText(nf.f, r))
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func nftChainHeader(k chainKind) string {
	switch k {
	case kindNATOutput:
		return "type nat hook output priority -100; policy accept;"
	case kindFilterOutput:
		return "type filter hook output priority filter; policy accept;"
	default:
		return "type nat hook prerouting priority dstnat; policy accept;"
	}
}

var icmpNames = map[uint8]string{3: "destination-unreachable", 11: "time-exceeded", 12: "parameter-problem"}

var icmpv6Names = map[uint8]string{
	1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
	133: "nd-router-solicit", 135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 143: "mld2-listener-report",
}

var protoNames = map[uint8]string{protoTCP: "tcp", protoUDP: "udp", protoICMP: "icmp", protoICMPv6: "ipv6-icmp"}

// nftRuleText prints one rule as nft does: a protocol match that a later
// port or type match implies is left out, as nft leaves it out.
func nftRuleText(f Family, r rule) string {
	var p []string
	m := r.m
	ip := "ip"
	if f == IPv6 {
		ip = "ip6"
	}
	if m.markMatch {
		p = append(p, fmt.Sprintf("meta mark & 0x%08x == 0x%08x", m.mask, m.mark))
	}
	if m.uid != nil {
		p = append(p, fmt.Sprintf("meta skuid %d", *m.uid))
	}
	if m.oifLo {
		p = append(p, `oifname "lo"`)
	}
	if m.proto != 0 && m.dport == 0 && m.icmpType == nil {
		p = append(p, "meta l4proto "+protoNames[m.proto])
	}
	if m.dst.IsValid() {
		d := m.dst.Masked().String()
		if m.dst.Bits() == m.dst.Addr().BitLen() {
			d = m.dst.Addr().String()
		}
		p = append(p, ip+" daddr "+d)
	}
	if m.dport != 0 {
		p = append(p, fmt.Sprintf("%s dport %d", protoNames[m.proto], m.dport))
	}
	if m.icmpType != nil {
		if m.proto == protoICMP {
			p = append(p, "icmp type "+icmpNames[*m.icmpType])
		} else {
			p = append(p, "icmpv6 type "+icmpv6Names[*m.icmpType])
		}
	}
	if m.hopLimit != nil {
		p = append(p, fmt.Sprintf("ip6 hoplimit %d", *m.hopLimit))
	}
	if m.ctState != 0 {
		p = append(p, "ct state "+ctStateNames(m.ctState, ",", map[uint32]string{ctInvalid: "invalid", ctRelated: "related"}))
	}
	switch r.v {
	case vReturn:
		p = append(p, "return")
	case vAccept:
		p = append(p, "accept")
	case vDrop:
		p = append(p, "drop")
	case vRedirect:
		p = append(p, fmt.Sprintf("redirect to :%d", r.toPort))
	}
	return strings.Join(p, " ")
}

// exprText is the comparable form of one expression: its kind and the
// fields this package sets (see nftExprs), data in hex.
func exprText(e expr.Any) string {
	switch x := e.(type) {
	case *expr.Meta:
		return fmt.Sprintf("meta key=%d sreg=%t reg=%d", x.Key, x.SourceRegister, x.Register)
	case *expr.Cmp:
		return fmt.Sprintf("cmp op=%d reg=%d data=%s", x.Op, x.Register, hex.EncodeToString(x.Data))
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise sreg=%d dreg=%d len=%d mask=%s xor=%s", x.SourceRegister, x.DestRegister, x.Len, hex.EncodeToString(x.Mask), hex.EncodeToString(x.Xor))
	case *expr.Payload:
		return fmt.Sprintf("payload op=%d dreg=%d base=%d offset=%d len=%d", x.OperationType, x.DestRegister, x.Base, x.Offset, x.Len)
	case *expr.Ct:
		return fmt.Sprintf("ct key=%d sreg=%t reg=%d dir=%d", x.Key, x.SourceRegister, x.Register, x.Direction)
	case *expr.Verdict:
		return fmt.Sprintf("verdict kind=%d chain=%q", x.Kind, x.Chain)
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg=%d data=%s", x.Register, hex.EncodeToString(x.Data))
	case *expr.Redir:
		return fmt.Sprintf("redir min=%d max=%d flags=%d", x.RegisterProtoMin, x.RegisterProtoMax, x.Flags)
	default:
		return fmt.Sprintf("unexpected expression %T", e)
	}
}

// canonExprs is the comparable form of a rule: its expressions in order.
func canonExprs(es []expr.Any) string {
	parts := make([]string, 0, len(es))
	for _, x := range es {
		parts = append(parts, exprText(x))
	}
	return strings.Join(parts, " ")
}

// ctStateNames joins the names of the state bits set in bits.
func ctStateNames(bits uint32, sep string, names map[uint32]string) string {
	var out []string
	for _, b := range []uint32{ctInvalid, ctRelated} {
		if bits&b != 0 {
			out = append(out, names[b])
		}
	}
	return strings.Join(out, sep)
}
