package capability

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// A host root with iptables-nft reachable through Debian-style absolute
// alternatives symlinks, and no iptables-legacy.
func TestWithHostBinaries(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/alternatives"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/sbin/xtables-nft-multi"), []byte("x"), 0o755)
	os.Symlink("/etc/alternatives/iptables-nft", filepath.Join(root, "usr/sbin/iptables-nft"))
	os.Symlink("/usr/sbin/xtables-nft-multi", filepath.Join(root, "etc/alternatives/iptables-nft"))
	// The kernel probe itself is not under test here: one that says every
	// backend works, so only the host-binary check can fail one.
	allWork := func(_ context.Context, backends []string, _ []redirect.Family) []nodestate.BackendResult {
		out := make([]nodestate.BackendResult, len(backends))
		for i, b := range backends {
			out[i] = nodestate.BackendResult{Backend: b, Works: true}
		}
		return out
	}
	res := WithHostBinaries(allWork, root)(context.Background(), []string{"nftables", "iptables-nft", "iptables-legacy"}, nil)
	if !res[0].Works || !res[1].Works {
		t.Fatalf("nftables/iptables-nft: %+v", res)
	}
	if res[2].Works || !strings.Contains(res[2].Error, "host has no iptables-legacy") {
		t.Fatalf("iptables-legacy without a host binary: %+v", res[2])
	}
}
