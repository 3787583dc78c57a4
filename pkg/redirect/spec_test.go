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

func TestCoveredFamily(t *testing.T) {
	cases := []struct {
		in   []string
		want redirect.Family
	}{
		{nil, ""},
		{[]string{"0.0.0.0/0"}, redirect.IPv4},
		{[]string{"0.0.0.0/1", "128.0.0.0/1"}, redirect.IPv4},
		{[]string{"128.0.0.0/1", "10.0.0.0/8", "0.0.0.0/1"}, redirect.IPv4},
		{[]string{"0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"}, redirect.IPv4},
		{[]string{"0.0.0.0/1", "128.0.0.0/2"}, ""},
		{[]string{"0.0.0.0/1", "192.0.0.0/2"}, ""},
		{[]string{"10.0.0.0/8", "192.168.0.0/16"}, ""},
		{[]string{"::/1", "8000::/1"}, redirect.IPv6},
		{[]string{"::/0"}, redirect.IPv6},
		{[]string{"::/1", "0.0.0.0/1"}, ""},
		{[]string{"::/1", "c000::/2", "8000::/2"}, redirect.IPv6},
		{[]string{"255.255.255.255/32", "0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4", "240.0.0.0/5", "248.0.0.0/6", "252.0.0.0/7", "254.0.0.0/8", "255.0.0.0/9", "255.192.0.0/10"}, ""},
		{[]string{"255.255.255.255/32", "0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4", "240.0.0.0/5", "248.0.0.0/6", "252.0.0.0/7", "254.0.0.0/8", "255.0.0.0/9", "255.128.0.0/9"}, redirect.IPv4},
	}
	for _, c := range cases {
		var ps []netip.Prefix
		for _, s := range c.in {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		if got := redirect.CoveredFamily(ps); got != c.want {
			t.Errorf("CoveredFamily(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
