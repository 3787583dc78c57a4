package podnetns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
)

// startIn runs `sleep` in a new network namespace (or the host's when
// hostNet) inside the cgroup rel below a test-owned group, as the kubelet
// and runtime would place a pod's process. It returns the PID.
func startIn(t *testing.T, root, rel string, hostNet bool) int {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "sleep", "60"}
	if hostNet {
		args = []string{"sleep", "60"}
	}
	cmd := exec.Command("unshare", args...)
	if hostNet {
		cmd = exec.Command("sleep", "60")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// Remove the groups bottom-up once empty.
		for d := dir; d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			for i := 0; i < 50; i++ { // EBUSY until the killed process is reaped from the group
				if err := os.Remove(d); err == nil || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// unshare execs sleep after creating the namespace: wait for that.
	host, _ := inode("/proc/self/ns/net")
	for i := 0; i < 100 && !hostNet; i++ {
		if ino, err := inode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ino != host {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pid
}

// TestFindRealProcesses: real processes in real cgroups named the way the
// kubelet names them (cgroupfs and systemd drivers) and real network
// namespaces; Find returns the pod's namespace, refuses hostNetwork pods and
// reports absent pods as ErrNotFound.
func TestFindRealProcesses(t *testing.T) {
	root := testenv.CgroupRoot(t)
	base := fmt.Sprintf("authbridge-podnetns-test-%d", os.Getpid())
	// UIDs unique to this run: Find scans the whole /proc, so a concurrent
	// run of this test (another worktree, go test -count) would otherwise
	// show its processes under the same UIDs.
	uid := func(n int) string { return fmt.Sprintf("0b6a3c6e-%d%d%d%d-4c5e-9f0a-%012d", n, n, n, n, os.Getpid()) }
	uidCgroupfs, uidSystemd, uidHostNet := uid(1), uid(2), uid(3)
	pidA := startIn(t, root, filepath.Join(base, "kubepods/besteffort/pod"+uidCgroupfs, "abc123"), false)
	pidB := startIn(t, root, filepath.Join(base, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(uidSystemd, "-", "_")+".slice/cri-containerd-def456.scope"), false)
	startIn(t, root, filepath.Join(base, "kubepods/pod"+uidHostNet, "ghi789"), true)

	f := Finder{ProcRoot: "/proc"}
	for uid, pid := range map[string]int{uidCgroupfs: pidA, uidSystemd: pidB} {
		n, err := f.Find(uid)
		if err != nil {
			t.Fatalf("Find(%s): %v", uid, err)
		}
		got, _ := fdInode(int(n.Fd()))
		want, _ := inode(fmt.Sprintf("/proc/%d/ns/net", pid))
		n.Close()
		if got != want {
			t.Errorf("Find(%s) = netns %d, want the process's %d", uid, got, want)
		}
	}
	if _, err := f.Find(uidHostNet); err == nil || !strings.Contains(err.Error(), "hostNetwork") {
		t.Errorf("hostNetwork pod: err = %v, want a refusal naming hostNetwork", err)
	}
	if _, err := f.Find(uid(4)); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent pod: err = %v, want ErrNotFound", err)
	}
	// CRI-O with conmon_cgroup = "pod": each container's conmon runs in the
	// pod's cgroup but in the host's netns; it is not the pod's process.
	uidCrio, uidCrioFS := uid(5), uid(6)
	crioSlice := filepath.Join(base, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(uidCrio, "-", "_")+".slice")
	startIn(t, root, filepath.Join(crioSlice, "crio-conmon-aaa111.scope"), true)
	pidC := startIn(t, root, filepath.Join(crioSlice, "crio-aaa111.scope"), false)
	startIn(t, root, filepath.Join(base, "kubepods/besteffort/pod"+uidCrioFS, "crio-conmon-bbb222"), true)
	pidD := startIn(t, root, filepath.Join(base, "kubepods/besteffort/pod"+uidCrioFS, "crio-bbb222"), false)
	for uid, pid := range map[string]int{uidCrio: pidC, uidCrioFS: pidD} {
		n, err := f.Find(uid)
		if err != nil {
			t.Fatalf("CRI-O pod with its conmon in the pod cgroup: Find(%s): %v", uid, err)
		}
		got, _ := fdInode(int(n.Fd()))
		want, _ := inode(fmt.Sprintf("/proc/%d/ns/net", pid))
		n.Close()
		if got != want {
			t.Errorf("CRI-O pod: Find(%s) = netns %d, want the container's %d", uid, got, want)
		}
	}
	// Two processes of one pod in different namespaces: refuse to guess.
	startIn(t, root, filepath.Join(base, "kubepods/besteffort/pod"+uidCgroupfs, "second"), false)
	if _, err := f.Find(uidCgroupfs); err == nil || !strings.Contains(err.Error(), "different network namespaces") {
		t.Errorf("ambiguous pod: err = %v, want a refusal", err)
	}
}

// TestContainsAny: a UID matches only as a whole path element's end.
func TestContainsAny(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"4:pids:/kubepods/podabc/x\n", true},
		{"0::/kubepods.slice/kubepods-podabc.slice/x.scope\n", true},
		{"4:pids:/kubepods/podabcd/x\n", false},
		{"4:pids:/kubepods/podabcd/x\n4:pids:/kubepods/podabc\n", true},
		{"4:pids:/kubepods/podab\n", false},
	} {
		if got := containsAny(tc.s, []string{"podabc"}); got != tc.want {
			t.Errorf("containsAny(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
