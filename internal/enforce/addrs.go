package enforce

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ErrNoPodAddress means the netns has no global address on any interface
// but loopback: the pod's network is not set up (yet).
var ErrNoPodAddress = errors.New("the pod's network namespace has no global IP address on any interface but lo")

// AddrFamilies reads the families of the pod's addresses from its netns:
// global (universe-scope) addresses on every interface but loopback. It is
// what the plugin uses when no previous plugin's result tells it (as a
// Multus attachment, which Multus runs after the cluster network has set
// up the pod's interface). No such address is ErrNoPodAddress: enforcing
// rules for a pod whose network is not there yet would be a guess.
func AddrFamilies(netns ns.NetNS) ([]redirect.Family, error) {
	var v4, v6 bool
	err := netns.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list interfaces: %w", err)
		}
		for _, l := range links {
			if l.Attrs().Flags&unix.IFF_LOOPBACK != 0 {
				continue
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
			}
			for _, a := range addrs {
				if a.Scope != unix.RT_SCOPE_UNIVERSE || a.IP.IsLinkLocalUnicast() {
					continue
				}
				if a.IP.To4() != nil {
					v4 = true
				} else {
					v6 = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the pod's addresses in network namespace %s: %w", netns.Path(), err)
	}
	fams := Families(v4, v6)
	if len(fams) == 0 {
		return nil, ErrNoPodAddress
	}
	return fams, nil
}

// Families lists the families a pod has addresses in, IPv4 first (the
// order every caller programs them in).
func Families(v4, v6 bool) []redirect.Family {
	var fams []redirect.Family
	if v4 {
		fams = append(fams, redirect.IPv4)
	}
	if v6 {
		fams = append(fams, redirect.IPv6)
	}
	return fams
}
