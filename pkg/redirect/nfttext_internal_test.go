package redirect

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

// TestExprTextCoversWhatWeWrite: every expression the backend writes has a
// field-by-field rendering (none falls to "unexpected"), and each field it
// sets changes the text, so Verify's comparison sees every operand.
func TestExprTextCoversWhatWeWrite(t *testing.T) {
	s := DefaultSpec(IPv4, IPv6)
	s.Resolvers = []netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("fd00::10")}
	s.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd01::/48")}
	s.ExcludeOutboundPorts = []uint16{443}
	s.InboundEnabled = true
	for _, f := range s.Families {
		for _, cr := range render(s, f) {
			for _, r := range cr.rules {
				if txt := canonExprs(nftExprs(f, r)); strings.Contains(txt, "unexpected") {
					t.Errorf("%s %s: %s", f, cr.name, txt)
				}
			}
		}
	}
	base := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 2}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0}, Xor: []byte{0, 0}},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Verdict{Kind: expr.VerdictAccept},
		&expr.Immediate{Register: 1, Data: []byte{0x1f, 0x92}},
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: 2},
	}
	changed := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 3}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0xff}, Xor: []byte{0, 0}},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Verdict{Kind: expr.VerdictDrop},
		&expr.Immediate{Register: 1, Data: []byte{0x1f, 0x93}},
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: 0},
	}
	for i := range base {
		if a, b := exprText(base[i]), exprText(changed[i]); a == b {
			t.Errorf("changing a field did not change the text: %s", a)
		}
	}
	if got := exprText(&expr.Counter{}); !strings.Contains(got, "unexpected") {
		t.Errorf("a foreign expression renders as %q; want it reported as unexpected", got)
	}
}
