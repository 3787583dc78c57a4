package agent

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// DefaultIPv6DisabledPath is the host's IPv6 switch. The agent runs with
// hostNetwork, and /proc/sys/net shows the reader's network namespace, so
// the agent's own /proc/sys is the host's.
const DefaultIPv6DisabledPath = redirect.IPv6DisabledPath

// ProbeFamilies returns the families a backend must work for on this host:
// IPv4, plus IPv6 when disableIPv6Path reads 0. The plugin programs IPv6
// rules for every pod whose netns has IPv6, so a backend that only works
// for IPv4 would fail those pods' ADDs. A missing file means the kernel has
// no IPv6 (ipv6.disable=1): IPv4 only, no error. Other read errors also
// give IPv4 only, with the error to log.
func ProbeFamilies(disableIPv6Path string) ([]redirect.Family, error) {
	v4 := []redirect.Family{redirect.IPv4}
	if disableIPv6Path == "" {
		return v4, nil
	}
	on, err := redirect.IPv6Switch(disableIPv6Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return v4, nil
	case err != nil:
		return v4, fmt.Errorf("is IPv6 enabled on the host? %w", err)
	case on:
		return []redirect.Family{redirect.IPv4, redirect.IPv6}, nil
	default:
		return v4, nil
	}
}
