package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// disableIPv6Path is the netns-wide IPv6 switch. /proc/sys/net resolves to
// the network namespace of the thread that opens it (not of the process),
// so IPv6Enabled opens and reads it on one locked thread.
const disableIPv6Path = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

// IPv6Enabled reports whether IPv6 is enabled in the network namespace of the
// calling OS thread: callers enter the pod's netns first (inside ns.Do, which
// locks the thread). A pod with IPv6 enabled has at least link-local IPv6
// addresses, even when it got only IPv4 addresses from IPAM, and can send
// from them; such a pod needs the IPv6 rules too. A kernel without IPv6
// (ipv6.disable=1, no ipv6 module) has no such file: false, nil.
func IPv6Enabled() (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile(disableIPv6Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", disableIPv6Path, err)
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "0":
		return true, nil
	case "1":
		return false, nil
	default:
		return false, fmt.Errorf("read %s: unexpected value %q (want 0 or 1)", disableIPv6Path, v)
	}
}
