package capability

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// HostSbinDirs are where the host's iptables binaries are looked for.
var HostSbinDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"}

// WithHostBinaries wraps a probe: the agent probes the kernel with the
// iptables shipped in its image, but the plugin runs on the host and uses
// the host's iptables-nft / iptables-legacy. A backend whose binary the
// host lacks cannot work for the plugin, whatever the kernel supports, so
// it is reported failed. hostRoot is where the host's / is mounted.
func WithHostBinaries(probe ProbeFunc, hostRoot string) ProbeFunc {
	return func(ctx context.Context, backends []string, families []redirect.Family) []nodestate.BackendResult {
		res := probe(ctx, backends, families)
		for i, r := range res {
			if !r.Works || !strings.HasPrefix(r.Backend, "iptables-") {
				continue
			}
			if !hostHas(hostRoot, r.Backend) {
				res[i].Works = false
				res[i].Error = "the host has no " + r.Backend + " binary in " + strings.Join(HostSbinDirs, ":") + " (the plugin runs on the host and uses the host's binary)"
			}
		}
		return res
	}
}

func hostHas(hostRoot, bin string) bool {
	for _, d := range HostSbinDirs {
		// Stat through the host root: absolute symlinks (Debian's
		// alternatives) are resolved against the host, not the container.
		if p, ok := resolveUnder(hostRoot, filepath.Join(d, bin)); ok {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return true
			}
		}
	}
	return false
}

// resolveUnder follows symlinks of p (a host path) inside root.
func resolveUnder(root, p string) (string, bool) {
	for i := 0; i < 16; i++ {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return "", false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			// Parent directories may be symlinks too (/sbin -> usr/sbin):
			// Stat of the joined path follows those relative links, which
			// is right for relative ones; absolute ones are rare there.
			return full, true
		}
		t, err := os.Readlink(full)
		if err != nil {
			return "", false
		}
		if filepath.IsAbs(t) {
			p = t
		} else {
			p = filepath.Join(filepath.Dir(p), t)
		}
	}
	return "", false
}
