package podnetns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// maxSymlinks bounds symlink resolution (the kernel's own limit is 40).
const maxSymlinks = 40

// HostPath returns where the host's path p is in the agent's view of the
// host's / mounted at hostRoot, resolving symlinks as the host would: an
// absolute link target starts again at hostRoot, not at the agent's /.
// /var/run -> /run on most hosts is why: joining "/host" and
// "/var/run/netns/cni-x" would otherwise land in the agent's own /run.
// hostRoot "" or "/" is the agent's /.
func HostPath(hostRoot, p string) (string, error) {
	if hostRoot == "" || hostRoot == "/" {
		return p, nil
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("host path %q is not absolute", p)
	}
	rest := strings.Split(filepath.Clean(p), "/")[1:]
	cur := "/" // resolved so far, in the host's view
	for hops := 0; len(rest) > 0; {
		elem := rest[0]
		rest = rest[1:]
		if elem == "" || elem == "." {
			continue
		}
		next := filepath.Join(cur, elem) // Join cleans "..", never above "/"
		fi, err := os.Lstat(filepath.Join(hostRoot, next))
		if err != nil {
			return "", fmt.Errorf("host path %s (under %s): %w", p, hostRoot, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", fmt.Errorf("host path %s (under %s): too many symlinks", p, hostRoot)
		}
		target, err := os.Readlink(filepath.Join(hostRoot, next))
		if err != nil {
			return "", fmt.Errorf("host path %s (under %s): %w", p, hostRoot, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		rest = append(strings.Split(filepath.Clean(target), "/")[1:], rest...)
		cur = "/"
	}
	return filepath.Join(hostRoot, cur), nil
}

// OpenHostPath opens the network namespace the host calls p (a record's
// netns: /var/run/netns/cni-..., /proc/<pid>/ns/net) through hostRoot.
func OpenHostPath(hostRoot, p string) (ns.NetNS, error) {
	hp, err := HostPath(hostRoot, p)
	if err != nil {
		return nil, err
	}
	return ns.GetNS(hp)
}
