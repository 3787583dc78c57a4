// Package podnetns finds a running pod's network namespace from the host,
// the way Istio ambient's node agent does: through procfs, by the pod UID in
// a process's cgroup path. The kubelet puts every container of a pod (the
// sandbox's pause process included) under a cgroup named after the pod UID,
// with either cgroup driver:
//
//	cgroupfs: /kubepods/besteffort/pod<uid>/<container>
//	systemd:  /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/...
//
// Why procfs and not the CRI: it needs no runtime socket or client in the
// agent, reads the same on containerd and CRI-O, and every process of the
// pod shares the sandbox's network namespace, so any one of them is enough.
//
// Except the runtime's own monitor: CRI-O with conmon_cgroup = "pod" (its
// setting on OpenShift, and with the systemd cgroup manager) starts each
// container's conmon in the pod's cgroup (crio-conmon-<id>.scope, or
// crio-conmon-<id> with cgroupfs) but in the host's network namespace.
// Those processes are not the pod's and are skipped; without that, every
// CRI-O pod looked like a hostNetwork pod (seen on the kind CRI-O workers,
// test/e2e: E2E_VARIANT=crio).
package podnetns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ErrNotFound means no process of the pod runs in this procfs (the pod is
// gone, not started, or runs in a VM whose processes the host cannot see).
var ErrNotFound = errors.New("no process of the pod found")

// Finder looks up pods' namespaces in ProcRoot: the host's procfs as the
// agent sees it ("/host/proc"; "/proc" when run in the host PID namespace).
type Finder struct {
	ProcRoot string
	// HostNetNS names the host's network namespace; default
	// /proc/self/ns/net: the agent runs with hostNetwork.
	HostNetNS string
}

// Find opens the network namespace of the pod with UID podUID. The returned
// handle keeps the namespace alive until closed, so the pod's processes
// exiting meanwhile cannot make it point elsewhere. A pod sharing the
// host's network namespace (hostNetwork) is refused.
func (f Finder) Find(podUID string) (ns.NetNS, error) {
	if podUID == "" || strings.ContainsAny(podUID, "/\n") {
		return nil, fmt.Errorf("pod UID %q: not a UID", podUID)
	}
	host := f.HostNetNS
	if host == "" {
		host = "/proc/self/ns/net"
	}
	hostIno, err := inode(host)
	if err != nil {
		return nil, fmt.Errorf("read the host's network namespace %s: %w", host, err)
	}
	ents, err := os.ReadDir(f.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", f.ProcRoot, err)
	}
	needles := []string{"pod" + podUID, "pod" + strings.ReplaceAll(podUID, "-", "_")}
	var found ns.NetNS
	var foundIno uint64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(f.ProcRoot, e.Name())
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil || !containsAny(string(cg), needles) {
			continue // gone meanwhile, or another pod's
		}
		if runtimeMonitor(string(cg)) {
			continue // CRI-O's conmon: in the pod's cgroup, not its netns
		}
		n, err := ns.GetNS(filepath.Join(dir, "ns", "net"))
		if err != nil {
			continue // exited between the two reads
		}
		ino, err := fdInode(int(n.Fd()))
		if err != nil {
			n.Close()
			continue
		}
		switch {
		case ino == hostIno:
			n.Close()
			if found != nil {
				found.Close()
			}
			return nil, fmt.Errorf("pod %s shares the host's network namespace (hostNetwork): no pod namespace to program", podUID)
		case found == nil:
			found, foundIno = n, ino
		case ino != foundIno:
			n.Close()
			found.Close()
			return nil, fmt.Errorf("processes of pod %s are in different network namespaces (%d, %d): refusing to guess", podUID, foundIno, ino)
		default:
			n.Close()
		}
	}
	if found == nil {
		return nil, fmt.Errorf("pod %s in %s: %w", podUID, f.ProcRoot, ErrNotFound)
	}
	return found, nil
}

// runtimeMonitor: the process's cgroup is a CRI-O conmon's
// (crio-conmon-<container id>[.scope]), not a container's.
func runtimeMonitor(cgroup string) bool {
	return strings.Contains(cgroup, "/crio-conmon-")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		// A UID is a whole path element's suffix: "pod<uid>" followed by
		// the end of the element, so a UID prefix cannot match another.
		for i := strings.Index(s, sub); i >= 0; {
			end := i + len(sub)
			if end == len(s) || strings.ContainsRune("/.\n", rune(s[end])) {
				return true
			}
			j := strings.Index(s[end:], sub)
			if j < 0 {
				break
			}
			i = end + j
		}
	}
	return false
}

func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func fdInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
