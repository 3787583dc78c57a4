// Package testenv says which tests can run where. `go test -short ./...` as
// an ordinary user runs every pure test in seconds; the tests that need root
// (network namespaces, netfilter) skip there with the reason. make test runs
// as root without -short, and fails when any test skipped (hack/test.sh), so a
// skip is never counted as a pass where the real thing can run.
package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Root skips t under -short, or when not running as root. what says what
// the test does that needs root ("network namespaces", "chown"), for the skip
// line.
func Root(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root (" + what + "): not run under -short; make test runs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (" + what + "): run as root, as make test does")
	}
}

// Heavy skips t under -short: the test needs something that takes long to
// build or start (a kube-apiserver, a qemu guest, a go build of binaries).
func Heavy(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs " + what + ": not run under -short; make test runs it")
	}
}

// CgroupRoot is a cgroup hierarchy a root test may create groups in (to
// place a process the way the kubelet places a pod's): the unified one on
// cgroup v2 hosts, the pids controller's on v1. It skips like Root.
func CgroupRoot(t testing.TB) string {
	t.Helper()
	Root(t, "cgroups, network namespaces")
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil || d != "/sys/fs/cgroup" {
				return d
			}
		}
	}
	t.Fatal("no writable cgroup hierarchy found")
	return ""
}

// Cgroup2Root is the cgroup v2 (unified) hierarchy: /sys/fs/cgroup on v2
// hosts, /sys/fs/cgroup/unified on hybrid v1 hosts. cgroup BPF programs
// (socket hooks) attach only there. It skips like Root, and fails when the
// host has no cgroup v2 mount.
func Cgroup2Root(t testing.TB) string {
	t.Helper()
	Root(t, "cgroup v2, BPF")
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return d
		}
	}
	t.Fatal("no cgroup v2 hierarchy mounted (/sys/fs/cgroup, /sys/fs/cgroup/unified)")
	return ""
}
