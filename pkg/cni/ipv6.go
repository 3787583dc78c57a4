package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ipv6ConfDir is where the kernel shows the per-netns IPv6 switches; what
// /proc/sys/net shows depends on the netns of the thread that reads it.
const ipv6ConfDir = "/proc/sys/net/ipv6/conf"

// ipv6EnabledHere reports whether IPv6 can carry traffic in the calling
// thread's netns (call it inside ns.WithNetNSPath). It errs on the side of
// "enabled": IPv6 counts as disabled only when the kernel has no IPv6 at all
// (no /proc/sys/net/ipv6) or every entry under conf/ (all, default and each
// interface) has disable_ipv6 = 1 — otherwise an interface can have at least
// an fe80:: link-local address, and traffic from it must be redirected too.
func ipv6EnabledHere() (bool, error) {
	entries, err := os.ReadDir(ipv6ConfDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // booted with ipv6.disable=1
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipv6ConfDir, err)
	}
	for _, e := range entries {
		p := filepath.Join(ipv6ConfDir, e.Name(), "disable_ipv6")
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the interface went away meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", p, err)
		}
		if strings.TrimSpace(string(b)) == "0" {
			return true, nil
		}
	}
	return false, nil
}
