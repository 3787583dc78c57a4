package redirect_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		field  string
		mutate func(*redirect.Spec)
	}{
		{"families", func(s *redirect.Spec) { s.Families = nil }},
		{"families", func(s *redirect.Spec) { s.Families = []redirect.Family{"ipx"} }},
		{"families", func(s *redirect.Spec) { s.Families = []redirect.Family{redirect.IPv4, redirect.IPv4} }},
		{"outboundPort", func(s *redirect.Spec) { s.OutboundPort = 0 }},
		{"markMask", func(s *redirect.Spec) { s.MarkMask = 0 }},
		{"mark", func(s *redirect.Spec) { s.Mark = 0x1539 }},
		{"proxyUID", func(s *redirect.Spec) { s.ProxyUID = 0 }},
		{"resolvers", func(s *redirect.Spec) { s.Resolvers = []netip.Addr{{}} }},
		{"resolvers", func(s *redirect.Spec) { s.Resolvers = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }},
		{"excludeOutboundCIDRs", func(s *redirect.Spec) { s.ExcludeOutboundCIDRs = []netip.Prefix{{}} }},
		{"excludeOutboundPorts", func(s *redirect.Spec) { s.ExcludeOutboundPorts = []uint16{443, 0} }},
		{"onLinkIPv6", func(s *redirect.Spec) { s.OnLinkIPv6 = []netip.Prefix{netip.MustParsePrefix("fd00::/48")} }},
		{"onLinkIPv6", func(s *redirect.Spec) { s.OnLinkIPv6 = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")} }},
		{"inboundPort", func(s *redirect.Spec) { s.InboundEnabled = true; s.InboundPort = 0 }},
		{"excludeInboundPorts", func(s *redirect.Spec) { s.InboundEnabled = true; s.ExcludeInboundPorts = []uint16{0} }},
	}
	for _, c := range cases {
		s := redirect.DefaultSpec(redirect.IPv4, redirect.IPv6)
		c.mutate(&s)
		err := s.Validate()
		var fe *redirect.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: Validate() = %v, want a FieldError", c.field, err)
			continue
		}
		if fe.Field != c.field || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Validate() = %q (field %q), want field %q", err, fe.Field, c.field)
		}
		// Every backend refuses the bad spec before touching the kernel.
		for _, name := range redirect.AllBackends {
			b, _ := redirect.New(name)
			if err := b.Apply(s); !errors.As(err, &fe) {
				t.Errorf("%s.Apply(bad %s) = %v, want the FieldError", name, c.field, err)
			}
		}
	}
	if err := redirect.DefaultSpec().Validate(); err != nil {
		t.Errorf("default spec invalid: %v", err)
	}
}
