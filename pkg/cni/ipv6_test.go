package cni

import (
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// TestIPv6EnabledHere reads the switches of a real netns: enabled by default,
// disabled when every entry says 1, and enabled again when one interface
// re-enables IPv6 although conf/all says 1 (redirect.IPv6Enabled alone would
// miss that interface's link-local address).
func TestIPv6EnabledHere(t *testing.T) {
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close(); _ = testutils.UnmountNS(n) }()
	set := func(entry, v string) {
		t.Helper()
		err := n.Do(func(ns.NetNS) error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+entry+"/disable_ipv6", []byte(v), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(want bool) {
		t.Helper()
		var got bool
		err := n.Do(func(ns.NetNS) error {
			var err error
			got, err = ipv6EnabledHere()
			return err
		})
		if err != nil || got != want {
			t.Fatalf("ipv6EnabledHere = %v, %v; want %v", got, err, want)
		}
	}
	check(true)
	for _, e := range []string{"all", "default", "lo"} {
		set(e, "1")
	}
	check(false)
	set("lo", "0")
	check(true)
}
