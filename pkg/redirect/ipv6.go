package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
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
