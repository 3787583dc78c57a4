package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ipv6ConfDir is where the kernel shows the per-netns IPv6 switches; what
// /proc/sys/net shows depends on the netns of the thread that reads it.
const ipv6ConfDir = "/proc/sys/net/ipv6/conf"

// ipv6EnabledHere reports whether IPv6 can carry traffic in the calling
// thread's netns (call it inside ns.WithNetNSPath). It errs on the side of
// "enabled": redirect.IPv6Enabled reads the netns-wide switch (conf/all), and
// on top of it any entry under conf/ (default, or one interface re-enabled
// after all was set) with disable_ipv6 = 0 counts, since such an interface
// has at least an fe80:: link-local address whose traffic must be
// redirected too. Disabled only when the kernel has no IPv6 at all (no
// /proc/sys/net/ipv6) or every entry says 1.
func ipv6EnabledHere() (bool, error) {
	if on, err := redirect.IPv6Enabled(); err != nil || on {
		return on, err
	}
	entries, err := os.ReadDir(ipv6ConfDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // booted with ipv6.disable=1
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipv6ConfDir, err)
	}
	for _, e := range entries {
		on, err := redirect.IPv6Switch(filepath.Join(ipv6ConfDir, e.Name(), "disable_ipv6"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // the interface went away meanwhile
		case errors.Is(err, redirect.ErrIPv6SwitchValue):
			continue // only "0" counts as enabled
		case err != nil:
			return false, err
		case on:
			return true, nil
		}
	}
	return false, nil
}
