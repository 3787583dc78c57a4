package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPv6DisabledPath is the netns-wide IPv6 switch. /proc/sys/net resolves
// to the network namespace of the thread that opens it (not of the
// process), so IPv6Enabled opens and reads it on one locked thread; the
// node agent (hostNetwork) reads the host's through it.
const IPv6DisabledPath = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

// ErrIPv6SwitchValue is wrapped by IPv6Switch for a value other than 0 or 1.
var ErrIPv6SwitchValue = errors.New("unexpected value (want 0 or 1)")

// IPv6Switch reads one disable_ipv6 sysctl file (the one reader of them in
// this project): on is true for "0", false for "1". A missing file (a
// kernel without IPv6, an interface gone) is an error wrapping
// fs.ErrNotExist, any other value one wrapping ErrIPv6SwitchValue; the
// callers decide what those mean.
func IPv6Switch(path string) (on bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "0":
		return true, nil
	case "1":
		return false, nil
	default:
		return false, fmt.Errorf("read %s: %q: %w", path, v, ErrIPv6SwitchValue)
	}
}

// IPv6Enabled reports whether IPv6 is enabled in the network namespace of the
// calling OS thread: callers enter the pod's netns first (inside ns.Do, which
// locks the thread). A pod with IPv6 enabled has at least link-local IPv6
// addresses, even when it got only IPv4 addresses from IPAM, and can send
// from them; such a pod needs the IPv6 rules too. A kernel without IPv6
// (ipv6.disable=1, no ipv6 module) has no such file: false, nil.
func IPv6Enabled() (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	on, err := IPv6Switch(IPv6DisabledPath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return on, err
}

// KernelHasIPv6 reports whether the kernel has IPv6 at all (the calling
// thread's netns shows /proc/sys/net/ipv6). When it does, IPv6 can be
// switched on in a netns after the rules were programmed, so the rules
// cover IPv6 whether or not it is enabled at that moment.
func KernelHasIPv6() (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, err := os.Stat("/proc/sys/net/ipv6")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat /proc/sys/net/ipv6: %w", err)
	}
	return true, nil
}

// MinOnLinkBits is the shortest on-link IPv6 prefix that opens neighbour
// discovery to its global addresses (see Spec.OnLinkIPv6).
const MinOnLinkBits = 64

// OnLinkIPv6 returns the IPv6 prefixes the calling thread's netns reaches
// without a gateway (routes with no next hop), /64 or longer, other than
// link-local and multicast: the pod's neighbours with global addresses
// (other pods on a bridge, a bridge gateway). Read inside the pod's netns
// at ADD; an app without CAP_NET_ADMIN cannot add routes afterwards.
func OnLinkIPv6() ([]netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("list IPv6 routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Gw != nil || len(r.MultiPath) > 0 || r.Dst == nil || r.Type != unix.RTN_UNICAST {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(a, bits).Masked()
		if bits < MinOnLinkBits || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
